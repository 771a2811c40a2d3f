"""Healthy control: bfloat16 autocast on the CPU (no GradScaler needed with bf16)."""

import torch
from _data import batches, classification_data, cli, mlp


def main():
    args = cli(__doc__)
    torch.manual_seed(args.seed)
    x, y = classification_data(seed=args.seed)
    model = mlp(x.shape[1], 4, hidden=128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 6):
        total = n = 0
        for xb, yb in batches(x, y, 64, g):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits.float(), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()

"""Healthy control: intentional gradient accumulation (4 micro-batches per optimizer step)."""

import torch
from _data import batches, classification_data, cli, mlp

ACCUMULATE = 4


def main():
    args = cli(__doc__)
    torch.manual_seed(args.seed)
    x, y = classification_data(seed=args.seed)
    model = mlp(x.shape[1], 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 6):
        optimizer.zero_grad()
        total = n = 0
        for i, (xb, yb) in enumerate(batches(x, y, 16, g)):
            loss = torch.nn.functional.cross_entropy(model(xb), yb) / ACCUMULATE
            loss.backward()
            if (i + 1) % ACCUMULATE == 0:
                optimizer.step()
                optimizer.zero_grad()
            total, n = total + loss.item() * ACCUMULATE, n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()

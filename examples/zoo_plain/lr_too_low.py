"""Learning rate too low: SGD at lr 1e-5 barely moves (healthy baseline: lr 0.05)."""

import torch
from _data import batches, classification_data, cli, mlp


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = classification_data(seed=args.seed)
    model = mlp(x.shape[1], 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5 if fault else 0.05)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 5):
        total = n = 0
        for xb, yb in batches(x, y, 32, g):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()

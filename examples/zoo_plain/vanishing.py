"""Vanishing gradients: a 12-layer sigmoid MLP (healthy baseline: 3 ReLU layers)."""

import torch
from _data import batches, classification_data, cli, mlp


def main():
    args = cli(__doc__)
    fault = not args.no_fault
    torch.manual_seed(args.seed)
    x, y = classification_data(seed=args.seed)
    model = mlp(x.shape[1], 4, hidden=64, depth=12 if fault else 3,
                act=torch.nn.Sigmoid if fault else torch.nn.ReLU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 4):
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

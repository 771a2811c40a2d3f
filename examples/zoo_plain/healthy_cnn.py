"""Healthy control: a small CNN (conv, batch norm, dropout) on 16x16 synthetic images."""

import torch
from _data import batches, cli
from torch import nn


def images(n=1024, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    pos = torch.randint(3, 13, (n,), generator=g)
    for i in range(n):
        p = int(pos[i])
        if y[i] in (0, 2):
            x[i, 0, p, 2:14] += 1.0
        if y[i] in (1, 2):
            x[i, 0, 2:14, p] += 1.0
    return x, y


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 16, 3),
    )


def main():
    args = cli(__doc__)
    torch.manual_seed(args.seed)
    x, y = images(seed=args.seed)
    model = cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs or 4):
        model.train()
        total = n = 0
        for xb, yb in batches(x, y, 32, g):
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch}: train loss {total / n:.4g}")


if __name__ == "__main__":
    main()

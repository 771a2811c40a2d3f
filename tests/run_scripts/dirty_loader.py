"""Regression over a TensorDataset in which rows --bad hold a NaN feature, read through a DataLoader with
shuffle=True (--workers N loader processes; --transform: the model sees a scaled copy of the batch). Under `trainmedic run --heal` TM313 names the dirty rows by
their dataset index and the run finishes finite."""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--bad", type=int, nargs="*", default=[37, 150, 301])
p.add_argument("--workers", type=int, default=0)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--transform", action="store_true", help="scale the batch before the model sees it")
args = p.parse_args()

if __name__ == "__main__":
    torch.manual_seed(0)
    x = torch.randn(400, 6)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(400, 1)
    x[args.bad, 2] = float("nan")
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss()
    for epoch in range(args.epochs):
        total, n = 0.0, 0
        for xb, yb in loader:
            if args.transform:
                xb, yb = xb * 1.0, yb * 1.0
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch} mean loss {total / n:.4f}")
    print("finite weights:", all(bool(torch.isfinite(q).all()) for q in model.parameters()))

"""A tiny regression for `trainmedic lr-find`: an MLP trained with SGD+momentum on y = x @ w + noise.

--loop loader: a DataLoader (shuffle=True) over a TensorDataset; --loop plain: slices of plain tensors;
--loop none: the model is only evaluated, no optimizer ever steps. --lr sets the optimizer's rate.
Prints one line per epoch on stdout (what lr-find must leave alone)."""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--loop", choices=["loader", "plain", "none"], default="loader")
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=30)
p.add_argument("--n", type=int, default=512)
args = p.parse_args()

torch.manual_seed(0)
x = torch.randn(args.n, 8)
y = x @ torch.linspace(-1, 1, 8).unsqueeze(1) + 0.1 * torch.randn(args.n, 1)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
loss_fn = nn.MSELoss()
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

for epoch in range(args.epochs):
    total = 0.0
    if args.loop == "loader":
        batches = loader
    else:
        batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, args.n, 32)]
    for xb, yb in batches:
        loss = loss_fn(model(xb), yb)
        if args.loop != "none":
            opt.zero_grad()
            loss.backward()
            opt.step()
        total += loss.item()
    print(f"epoch {epoch} loss {total / len(batches):.4f}", flush=True)

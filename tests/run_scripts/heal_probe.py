"""Plain SGD at 30x a good rate (3.0 against 0.1) on a small regression: the loss blows up in the first steps.

An ordinary script: a DataLoader, ``optimizer.step()``, nothing of trainmedic. Prints the optimizer's rate
and the validation loss after each epoch on stdout, so a test can see the rate the run continued at.
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainmedic.zoo._common import mlp, regression_data

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=3.0)
p.add_argument("--epochs", type=int, default=4)
args = p.parse_args()

x, y = regression_data(n=1024, d=16, seed=0, noise=0.3)
xv, yv = regression_data(n=512, d=16, seed=0, noise=0.3, split="val")
torch.manual_seed(0)
model = mlp(16, 1, hidden=64)
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
for epoch in range(args.epochs):
    for xb, yb in loader:
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val = nn.functional.mse_loss(model(xv), yv).item()
    print(f"epoch {epoch} lr {opt.param_groups[0]['lr']!r} val {val:.6g}", flush=True)

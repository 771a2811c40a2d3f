"""Medic-API version of gaussnll_hetero.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Heteroscedastic regression with nn.GaussianNLLLoss: the network predicts a mean and a variance.

Synthetic data: 6 inputs, a smooth nonlinear mean, a noise level that grows with |x0|. A trunk of
weight-normalised linear layers (`nn.utils.parametrizations.weight_norm`), a mean head and a variance
head (softplus), `GaussianNLLLoss()`; Adam with a `LambdaLR` linear warmup over 200 steps and then a
1/sqrt decay, stepped every batch; a DataLoader. Metric: validation Gaussian NLL (with the constant, nats).
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.utils.data import DataLoader, TensorDataset

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)


def make(n, g):
    x = torch.rand(n, 6, generator=g) * 4 - 2
    mean = 2 * torch.sin(1.5 * x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] ** 2
    std = 0.3 + 0.8 * x[:, 0].abs()
    return x, mean + std * torch.randn(n, generator=g)


g = torch.Generator().manual_seed(55 + args.seed)
x_train, y_train = make(4000, g)
x_val, y_val = make(1000, g)
loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)


class HeteroNet(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.trunk = nn.Sequential(weight_norm(nn.Linear(6, hidden)), nn.GELU(),
                                   weight_norm(nn.Linear(hidden, hidden)), nn.GELU())
        self.mean = nn.Linear(hidden, 1)
        self.var = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.trunk(x)
        mu, var = self.mean(h), F.softplus(self.var(h)) + 1e-4
        return mu.squeeze(-1), var.squeeze(-1)


model = HeteroNet()
criterion = nn.GaussianNLLLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
WARMUP = 200
scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: (s + 1) / WARMUP if s < WARMUP else math.sqrt(WARMUP / (s + 1)))

medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode,
                         loss_fn=lambda out, y: criterion(out[0], y, out[1]), scheduler_interval="step")
with medic:
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in loader:
            mu, var = model(xb)
            loss = criterion(mu, yb, var)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            mu, var = model(x_val)
            val_nll = F.gaussian_nll_loss(mu, y_val, var, full=True).item()
        medic.end_epoch(val_loss=val_nll)
        if medic.should_stop:
            break
        print(f"epoch {epoch} loss {loss.item():.4f} val nll {val_nll:.4f} lr {scheduler.get_last_lr()[0]:.2e}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_nll", "value": val_nll}))

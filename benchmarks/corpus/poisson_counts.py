"""Sparse counts (most rows 0, some 1-4): an MLP predicts a Poisson rate, trained on a hand-written NLL.

The rate goes through softplus, the log gets an epsilon; Adam, plain tensor minibatches, a validation
pass every epoch feeding ReduceLROnPlateau; the metric is the mean Poisson deviance on validation rows.
"""

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def simulate(n, rng):
    x = rng.normal(size=(n, 8))
    w = np.array([0.6, -0.4, 0.3, 0.0, 0.5, -0.2, 0.0, 0.25])
    log_rate = -0.6 + x @ w + 0.3 * np.sin(2 * x[:, 0])
    return x.astype(np.float32), rng.poisson(np.exp(log_rate)).astype(np.float32)


def poisson_deviance(rate, y):
    rate = rate.clamp(min=1e-8)
    term = torch.where(y > 0, y * torch.log(y / rate), torch.zeros_like(y))
    return (2 * (term - (y - rate))).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    x_np, y_np = simulate(4000, rng)
    x_all, y_all = torch.from_numpy(x_np), torch.from_numpy(y_np)
    x_tr, y_tr = x_all[:3200], y_all[:3200]
    x_va, y_va = x_all[3200:], y_all[3200:]

    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)

    for epoch in range(args.epochs):
        order = torch.randperm(len(x_tr))
        for start in range(0, len(order), 128):
            sel = order[start:start + 128]
            rate = F.softplus(net(x_tr[sel])).squeeze(-1)
            nll = (rate - y_tr[sel] * torch.log(rate + 1e-8)).mean()
            opt.zero_grad()
            nll.backward()
            opt.step()
        with torch.no_grad():
            val_rate = F.softplus(net(x_va)).squeeze(-1)
            val_nll = (val_rate - y_va * torch.log(val_rate + 1e-8)).mean().item()
        plateau.step(val_nll)
        print(f"epoch {epoch:2d} val_nll={val_nll:.4f} lr={opt.param_groups[0]['lr']:.2g}")

    with torch.no_grad():
        dev = poisson_deviance(F.softplus(net(x_va)).squeeze(-1), y_va).item()
    print("FINAL " + json.dumps({"metric": "val_poisson_deviance", "value": dev}))


if __name__ == "__main__":
    main()

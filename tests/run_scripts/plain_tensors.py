"""Linear regression on plain tensors (`requires_grad=True`, no nn.Parameter) with torch.optim.SGD([w, b]).
`--nan-at N` puts a NaN into the batch of step N."""

import argparse

import torch

p = argparse.ArgumentParser()
p.add_argument("--nan-at", type=int, default=-1)
args = p.parse_args()
torch.manual_seed(0)
w = torch.zeros(4, 1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
opt = torch.optim.SGD([w, b], lr=0.1)
true_w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
for step in range(40):
    x = torch.randn(32, 4)
    if step == args.nan_at:
        x[0, 0] = float("nan")
    loss = ((x @ w + b - (x @ true_w + 0.3)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.5f} finite {bool(torch.isfinite(w).all() and torch.isfinite(b).all())}")

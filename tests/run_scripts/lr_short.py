"""Steps its optimizer --steps times, then (--fail) raises its own error or returns; saves the model's
weights to --save in a finally block (what lr-find must leave as they were before the sweep)."""

import argparse

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=3)
p.add_argument("--fail", action="store_true")
p.add_argument("--save", default="")
args = p.parse_args()
torch.manual_seed(0)
model = nn.Linear(4, 1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(64, 4), torch.randn(64, 1)
try:
    for _ in range(args.steps):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.fail:
        raise RuntimeError("the script's own error")
finally:
    if args.save:
        torch.save(model.state_dict(), args.save)

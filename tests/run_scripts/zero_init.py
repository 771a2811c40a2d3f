"""A classifier whose every parameter is initialised to zero (or, with --healthy, only its last layer):
unmodified, for `trainmedic run`. Prints the final training loss."""

import argparse

import torch
import torch.nn.functional as F
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--healthy", action="store_true")
ap.add_argument("--act", default="relu")
args = ap.parse_args()
torch.manual_seed(0)
x = torch.randn(512, 10)
y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
act = {"relu": nn.ReLU, "tanh": nn.Tanh}[args.act]
model = nn.Sequential(nn.Linear(10, 32), act(), nn.Linear(32, 32), act(), nn.Linear(32, 3))
for p in (model[-1].parameters() if args.healthy else model.parameters()):
    nn.init.zeros_(p)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _epoch in range(3):
    for i in range(0, 512, 32):
        loss = F.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
print(f"loss {loss.item():.4f}")

"""SGD with momentum under SGDR's warm restarts (CosineAnnealingWarmRestarts, stepped every step, peak 0.5),
an MLP on a 2-class problem. ``--by-hand``: the loop writes the very same rates into the optimizer itself."""

import sys

import torch
from sklearn.datasets import make_classification
from torch.nn import functional as F

x, y = make_classification(n_samples=1024, n_features=20, n_informative=6, flip_y=0.0, random_state=0)
x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
by_hand = "--by-hand" in sys.argv
if by_hand:
    rates = [1e-4 + (0.5 - 1e-4) * (1 + torch.cos(torch.tensor(torch.pi * (t % 120) / 120)).item()) / 2
             for t in range(480)]
else:
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=120, eta_min=1e-4)
for t in range(480):
    if by_hand:
        for g in opt.param_groups:
            g["lr"] = rates[t]
    idx = torch.arange(t * 32, t * 32 + 32) % 1024
    loss = F.binary_cross_entropy_with_logits(model(x[idx]).squeeze(1), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if not by_hand:
        sched.step()
print("final loss", loss.item())

"""A regression that clips its own gradients (imported by name, as many scripts do), with one outlier batch.

``--no-clip``: the same script without the clip, where the outlier wrecks the run (TM303 expected).
"""

import sys

import torch
from torch.nn.utils import clip_grad_norm_

clip = "--no-clip" not in sys.argv
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)
w = torch.randn(8, 1, generator=g)
x = torch.randn(4000, 8, generator=g)
y = x @ w + 0.3 * torch.randn(4000, 1, generator=g)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for t in range(300):
    idx = torch.randint(0, 4000, (32,), generator=g)
    xb, yb = x[idx], y[idx] * (8.0 if t == 150 else 1.0)
    loss = torch.nn.functional.mse_loss(model(xb), yb)
    opt.zero_grad()
    loss.backward()
    if clip:
        clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
print("done")

"""A plain loop (no trainmedic) that saves its final weights to the path given on its command line."""

import sys

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x, y = torch.randn(256, 4), torch.randn(256, 1)
for step in range(30):
    idx = torch.arange(step * 8, step * 8 + 8) % 256
    loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
torch.save(model.state_dict(), sys.argv[1])

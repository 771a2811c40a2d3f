"""Computes gradients with respect to the input (a saliency map) and trains nothing."""

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
x = torch.randn(16, 4, requires_grad=True)
for _ in range(3):
    model.zero_grad()
    model(x).sum().backward()
print("saliency", [round(v, 4) for v in x.grad.abs().mean(0).tolist()])

"""Fit a noisy 1-D function with a small MLP, stepping the optimizer through a closure.

The training step is `optimizer.step(closure)` with SGD (momentum), the closure calls
`optimizer.zero_grad(set_to_none=False)`, computes a Huber loss (nn.SmoothL1Loss) and backpropagates;
an ExponentialLR decays the rate per epoch. Metric: validation MSE against the noiseless function.
"""
import argparse
import json
import math

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=40)
args = p.parse_args()
torch.manual_seed(args.seed)


def f(x):
    return torch.sin(3 * x) + 0.5 * x


x_train = torch.rand(800, 1) * 4 - 2
y_train = f(x_train) + 0.1 * torch.randn_like(x_train)
x_val = torch.linspace(-2, 2, 200).unsqueeze(1)
y_val = f(x_val)

net = nn.Sequential(nn.Linear(1, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))
criterion = nn.SmoothL1Loss(beta=0.5)
optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=math.exp(math.log(0.1) / args.epochs))

for epoch in range(args.epochs):
    perm = torch.randperm(len(x_train))
    for i in range(0, len(perm), 40):
        xb, yb = x_train[perm[i:i + 40]], y_train[perm[i:i + 40]]

        def closure():
            optimizer.zero_grad(set_to_none=False)
            loss = criterion(net(xb), yb)  # noqa: B023 (called at once, inside this iteration)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
    scheduler.step()
    with torch.no_grad():
        val = nn.functional.mse_loss(net(x_val), y_val).item()
    if epoch % 10 == 0 or epoch == args.epochs - 1:
        print(f"epoch {epoch} loss {loss.item():.4f} val {val:.4f}")

print("FINAL " + json.dumps({"metric": "val_mse", "value": val}))

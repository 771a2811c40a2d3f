"""A ReLU regression whose hidden units all die when one batch carries -9999 sentinel labels (TM311).

    python dead_relu.py [--sentinel]
"""

import argparse

import torch

p = argparse.ArgumentParser()
p.add_argument("--sentinel", action="store_true")
p.add_argument("--epochs", type=int, default=4)
args = p.parse_args()

torch.manual_seed(0)
x = torch.rand(3200, 8) * 2
y = x.sum(1, keepdim=True)
if args.sentinel:
    y[50 * 32:51 * 32] = -9999.0  # the 51st batch of each epoch: a sentinel nobody cleaned
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(args.epochs):
    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch} loss {loss.item():.4g}")

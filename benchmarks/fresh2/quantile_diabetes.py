"""Quantile regression on sklearn's diabetes data: one network predicts the 10th, 50th and 90th
percentiles of disease progression, trained with the pinball loss written as a plain function.

An MLP with three outputs, Adagrad, minibatches from torch.randperm, standardized inputs and target,
a validation check every 5 epochs. Metric: validation pinball loss averaged over the three quantiles.
"""
import argparse
import json

import torch
from sklearn.datasets import load_diabetes
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=40)
args = p.parse_args()
torch.manual_seed(args.seed)

QUANTILES = torch.tensor([0.1, 0.5, 0.9])


def pinball_loss(pred, target):
    """pred: (B, 3) quantile predictions, target: (B,)."""
    diff = target.unsqueeze(1) - pred
    return torch.maximum(QUANTILES * diff, (QUANTILES - 1) * diff).mean()


X, y = load_diabetes(return_X_y=True)
X = torch.tensor(X, dtype=torch.float32)
y = torch.tensor(y, dtype=torch.float32)
perm = torch.randperm(len(X))
tr, va = perm[:340], perm[340:]
x_mean, x_std = X[tr].mean(0), X[tr].std(0)
y_mean, y_std = y[tr].mean(), y[tr].std()
X = (X - x_mean) / x_std
y = (y - y_mean) / y_std
x_train, y_train, x_val, y_val = X[tr], y[tr], X[va], y[va]

model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.Adagrad(model.parameters(), lr=0.01)

for epoch in range(args.epochs):
    model.train()
    order = torch.randperm(len(x_train))
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        loss = pinball_loss(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if epoch % 5 == 0 or epoch == args.epochs - 1:
        model.eval()
        with torch.no_grad():
            val = pinball_loss(model(x_val), y_val).item()
        print(f"epoch {epoch} loss {loss.item():.4f} val pinball {val:.4f}")

print("FINAL " + json.dumps({"metric": "val_pinball", "value": val}))

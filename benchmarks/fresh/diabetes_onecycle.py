"""Diabetes progression (sklearn's shipped data set) regressed by an MLP.

A DataLoader over a TensorDataset, Adam with OneCycleLR stepped every batch, targets standardized and
kept as a (B, 1) column, evaluation each epoch with model.eval() and torch.no_grad().
Metric: validation MSE on the standardized target.
"""
import argparse
import json

import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=30)
args = p.parse_args()
torch.manual_seed(args.seed)

X, y = load_diabetes(return_X_y=True)
X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25, random_state=args.seed)
mu, sd = X_tr.mean(0), X_tr.std(0)
ym, ys = y_tr.mean(), y_tr.std()
X_tr = torch.tensor((X_tr - mu) / sd, dtype=torch.float32)
X_va = torch.tensor((X_va - mu) / sd, dtype=torch.float32)
y_tr = torch.tensor((y_tr - ym) / ys, dtype=torch.float32).unsqueeze(1)
y_va = torch.tensor((y_va - ym) / ys, dtype=torch.float32).unsqueeze(1)

train_loader = DataLoader(TensorDataset(X_tr, y_tr), batch_size=32, shuffle=True)
model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
criterion = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=5e-3, epochs=args.epochs,
                                                steps_per_epoch=len(train_loader))

for epoch in range(args.epochs):
    model.train()
    running = 0.0
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item()
    model.eval()
    with torch.no_grad():
        val = criterion(model(X_va), y_va).item()
    if epoch % 10 == 0 or epoch == args.epochs - 1:
        print(f"epoch {epoch:3d} train {running / len(train_loader):.4f} val {val:.4f}")

print("FINAL " + json.dumps({"metric": "val_mse", "value": val}))

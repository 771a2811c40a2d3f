"""Full-batch Rprop on the breast-cancer data: a small MLP, BCEWithLogitsLoss, no minibatches.

sklearn's breast-cancer set, standardised on the training split; a 30-32-16-1 MLP with tanh; Rprop
(sign-based, per-weight step sizes; meant for full-batch training) over the whole training set for 50
iterations, keeping the iteration with the lowest validation loss. Metric: test error rate.
"""
import argparse
import copy
import json

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--iters", type=int, default=50)
args = p.parse_args()
torch.manual_seed(args.seed)

X, y = load_breast_cancer(return_X_y=True)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.seed)
X_tr, X_va, y_tr, y_va = train_test_split(X_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=args.seed)
mean, std = X_tr.mean(0), X_tr.std(0)
X_tr, X_va, X_te = [torch.tensor((a - mean) / std, dtype=torch.float32) for a in (X_tr, X_va, X_te)]
y_tr, y_va, y_te = [torch.tensor(a, dtype=torch.float32) for a in (y_tr, y_va, y_te)]

model = nn.Sequential(nn.Linear(30, 32), nn.Tanh(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 1))
criterion = nn.BCEWithLogitsLoss()
optimizer = torch.optim.Rprop(model.parameters(), lr=0.01)

best_val, best_state = float("inf"), None
for it in range(args.iters):
    model.train()
    loss = criterion(model(X_tr).squeeze(1), y_tr)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = criterion(model(X_va).squeeze(1), y_va).item()
    if val_loss < best_val:
        best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
    if it % 10 == 0:
        print(f"iter {it} loss {loss.item():.4f} val loss {val_loss:.4f}")

model.load_state_dict(best_state)
with torch.no_grad():
    test_err = ((model(X_te).squeeze(1) > 0).float() != y_te).float().mean().item()
print(f"best val loss {best_val:.4f}")
print("FINAL " + json.dumps({"metric": "test_error", "value": test_err}))

"""Medic-API version of plateau_earlystop.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Digits MLP with ReduceLROnPlateau stepped on the validation loss and early stopping written by hand.

Train / validation / test split of sklearn's 8x8 digits, an MLP with Dropout, SGD with momentum and
weight decay, ReduceLROnPlateau(factor 0.5, patience 2) stepped on the validation loss every epoch,
a patience-6 early stop that keeps a deepcopy of the best state_dict and loads it back at the end.
Metric: test error rate of the restored best model.
"""
import argparse
import copy
import json

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=60)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
perm = torch.randperm(len(X))
tr, va, te = perm[:1100], perm[1100:1450], perm[1450:]
train_loader = DataLoader(TensorDataset(X[tr], y[tr]), batch_size=32, shuffle=True)

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 64), nn.ReLU(),
                      nn.Dropout(0.3), nn.Linear(64, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)

best_val, best_state, bad_epochs = float("inf"), None, 0
medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=F.cross_entropy)
with medic:
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in train_loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            val_loss = F.cross_entropy(model(X[va]), y[va]).item()
        medic.end_epoch(val_loss=val_loss)
        if medic.should_stop:
            break
        print(f"epoch {epoch} loss {loss.item():.4f} val loss {val_loss:.4f} lr {optimizer.param_groups[0]['lr']:.4g}")
        if val_loss < best_val - 1e-4:
            best_val, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= 6:
                print(f"early stop at epoch {epoch}, best val loss {best_val:.4f}")
                break

if args.out:
    medic.save_report(args.out)
model.load_state_dict(best_state)
model.eval()
with torch.no_grad():
    test_err = (model(X[te]).argmax(1) != y[te]).float().mean().item()
print("FINAL " + json.dumps({"metric": "test_error", "value": test_err}))

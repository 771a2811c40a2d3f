"""Medic-API version of multitask.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Multi-task MLP on breast-cancer data (sklearn): one head classifies the tumour, a second head
regresses a held-out feature (mean area, standardized) from the others; the two losses are summed.

Shared trunk, two heads, BCEWithLogitsLoss + MSELoss with a weight, SGD with Nesterov momentum,
full-batch-ish minibatches via torch.split over a shuffled index, validation of both tasks.
Metric: validation classification error + regression MSE.
"""
import argparse
import json

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=60)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)

data = load_breast_cancer()
X = data.data.astype(np.float32)
area = X[:, 3].copy()
X = np.delete(X, 3, axis=1)
labels = data.target.astype(np.float32)
order = rng.permutation(len(X))
tr, va = order[:450], order[450:]
mean, std = X[tr].mean(0), X[tr].std(0)
X = (X - mean) / std
area = (area - area[tr].mean()) / area[tr].std()
train_x, val_x = torch.from_numpy(X[tr]), torch.from_numpy(X[va])
train_cls, val_cls = torch.from_numpy(labels[tr]), torch.from_numpy(labels[va])
train_reg, val_reg = torch.from_numpy(area[tr]), torch.from_numpy(area[va])


class TwoHeads(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh())
        self.cls_head = nn.Linear(32, 1)
        self.reg_head = nn.Linear(32, 1)

    def forward(self, x):
        h = self.trunk(x)
        return self.cls_head(h).squeeze(-1), self.reg_head(h).squeeze(-1)


model = TwoHeads(X.shape[1])
bce = nn.BCEWithLogitsLoss()
mse = nn.MSELoss()
opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)

medic = trainmedic.Medic(model, opt, mode=args.mode,
                         loss_fn=lambda out, y: bce(out[0], y[0]) + 0.5 * mse(out[1], y[1]))
with medic:
    for epoch in range(args.epochs):
        model.train()
        idx = torch.from_numpy(rng.permutation(len(train_x)))
        for b in torch.split(idx, 32):
            logit, reg = model(train_x[b])
            loss = bce(logit, train_cls[b]) + 0.5 * mse(reg, train_reg[b])
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(train_x[b], (train_cls[b], train_reg[b])))
        model.eval()
        with torch.no_grad():
            logit, reg = model(val_x)
            v_err = ((logit > 0).float() != val_cls).float().mean().item()
            v_mse = mse(reg, val_reg).item()
            v_loss = (bce(logit, val_cls) + 0.5 * mse(reg, val_reg)).item()
        medic.end_epoch(val_loss=v_loss)
        if medic.should_stop:
            break
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch} loss {loss.item():.4f} val err {v_err:.3f} val mse {v_mse:.3f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_err_plus_mse", "value": v_err + v_mse}))

"""Medic-API version of multilabel_pos_weight.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Multi-label classification: 5 rare, overlapping labels on synthetic tabular data.

BCEWithLogitsLoss with a per-label pos_weight (negatives / positives on the training split), an MLP
with LayerNorm and Dropout, AdamW with two parameter groups (weight decay on the weight matrices
only, none on biases and norms), random_split into train/validation and two DataLoaders.
Metric: 1 - macro ROC AUC on the validation split.
"""
import argparse
import json

import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=15)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

N, D, L = 4000, 24, 5
g = torch.Generator().manual_seed(100 + args.seed)
X = torch.randn(N, D, generator=g)
W = torch.randn(D, L, generator=g) / D ** 0.5
score = X @ W + 0.5 * torch.tanh(X[:, :L] * X[:, L:2 * L]) + 0.3 * torch.randn(N, L, generator=g)
rates = torch.tensor([0.9, 0.85, 0.8, 0.75, 0.7])
cut = torch.stack([torch.quantile(score[:, j], rates[j]) for j in range(L)])
Y = (score > cut).float()

dataset = TensorDataset(X, Y)
train_set, val_set = random_split(dataset, [3200, 800], generator=torch.Generator().manual_seed(args.seed))
train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
val_loader = DataLoader(val_set, batch_size=400)

y_tr = Y[train_set.indices]
pos_weight = (len(y_tr) - y_tr.sum(0)) / y_tr.sum(0)

model = nn.Sequential(nn.Linear(D, 128), nn.LayerNorm(128), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(128, 64), nn.LayerNorm(64), nn.ReLU(), nn.Dropout(0.2),
                      nn.Linear(64, L))
decay = [p_ for n, p_ in model.named_parameters() if p_.ndim == 2]
no_decay = [p_ for n, p_ in model.named_parameters() if p_.ndim < 2]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                               {"params": no_decay, "weight_decay": 0.0}], lr=2e-3)
criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)


def evaluate():
    model.eval()
    outs, ys = [], []
    with torch.no_grad():
        for xb, yb in val_loader:
            outs.append(model(xb))
            ys.append(yb)
    scores, truth = torch.cat(outs).numpy(), torch.cat(ys).numpy()
    return 1.0 - roc_auc_score(truth, scores, average="macro")


medic = trainmedic.Medic(model, optimizer, mode=args.mode, loss_fn=criterion)
with medic:
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in train_loader:
            loss = criterion(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        err = evaluate()
        medic.end_epoch(val_metric=err, higher_is_better=False)
        if medic.should_stop:
            break
        print(f"epoch {epoch} loss {loss.item():.4f} val 1-auc {err:.4f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "val_one_minus_macro_auc", "value": err}))

"""Medic-API version of sgdr_imbalanced.py (the README's `with Medic(...)`, `loss_fn=`, `batch=`).

Imbalanced 3-class classification: WeightedRandomSampler, SGD with Nesterov, warm restarts.

sklearn's `make_classification` with class weights 0.80 / 0.15 / 0.05; a `WeightedRandomSampler` draws
the training rows with inverse-frequency weights (replacement) so each batch is roughly balanced; an MLP
with BatchNorm; SGD (momentum 0.9, nesterov, weight decay) under `CosineAnnealingWarmRestarts(T_0=5,
T_mult=2)` stepped once an epoch; `zero_grad(set_to_none=False)`. Metric: 1 - balanced accuracy on test.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from sklearn.datasets import make_classification
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

import trainmedic

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=35)
p.add_argument("--mode", default="watch")
p.add_argument("--out", default=None)
args = p.parse_args()
torch.manual_seed(args.seed)

X, y = make_classification(n_samples=4000, n_features=20, n_informative=8, n_redundant=4, n_classes=3,
                           weights=[0.80, 0.15, 0.05], class_sep=1.0, flip_y=0.01, random_state=args.seed)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.seed)
scaler = StandardScaler().fit(X_tr)
X_tr = torch.tensor(scaler.transform(X_tr), dtype=torch.float32)
X_te = torch.tensor(scaler.transform(X_te), dtype=torch.float32)
y_tr, y_te = torch.tensor(y_tr), torch.tensor(y_te)

counts = torch.bincount(y_tr).float()
sample_weights = (1.0 / counts)[y_tr]
sampler = WeightedRandomSampler(sample_weights, num_samples=len(y_tr), replacement=True)
loader = DataLoader(TensorDataset(X_tr, y_tr), batch_size=64, sampler=sampler)

model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64), nn.BatchNorm1d(64),
                      nn.ReLU(), nn.Linear(64, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=5, T_mult=2)

medic = trainmedic.Medic(model, optimizer, scheduler=scheduler, mode=args.mode, loss_fn=F.cross_entropy)
with medic:
    for epoch in range(args.epochs):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            pred = model(X_te).argmax(1)
        bal_err = 1 - balanced_accuracy_score(y_te.numpy(), pred.numpy())
        medic.end_epoch(val_metric=bal_err, higher_is_better=False)
        if medic.should_stop:
            break
        if epoch % 5 == 4:
            print(f"epoch {epoch} loss {loss.item():.4f} lr {scheduler.get_last_lr()[0]:.4f} balanced error {bal_err:.4f}")

if args.out:
    medic.save_report(args.out)
print("FINAL " + json.dumps({"metric": "balanced_error", "value": float(bal_err)}))

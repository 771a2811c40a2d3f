"""Imbalanced binary classification (10 % positives, sklearn make_classification) with a focal loss
written as a custom nn.Module, an explicit train()/evaluate() pair of functions and Adam.

Metric: validation balanced error rate.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from sklearn.datasets import make_classification
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=25)
args = p.parse_args()
torch.manual_seed(args.seed)

X, y = make_classification(n_samples=3000, n_features=20, n_informative=6, weights=[0.9, 0.1],
                           class_sep=1.0, random_state=args.seed)
X = torch.tensor(X, dtype=torch.float32)
y = torch.tensor(y, dtype=torch.float32)
x_train, y_train, x_val, y_val = X[:2400], y[:2400], X[2400:], y[2400:]


class FocalLoss(nn.Module):
    """Lin et al.'s focal loss on logits: down-weights the easy examples of the majority class."""

    def __init__(self, gamma=2.0, alpha=0.75):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits, target):
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)
        alpha_t = self.alpha * target + (1 - self.alpha) * (1 - target)
        return (alpha_t * (1 - p_t) ** self.gamma * bce).mean()


model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 1))
criterion = FocalLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)


def train_one_epoch():
    model.train()
    perm = torch.randperm(len(x_train))
    for i in range(0, len(perm), 64):
        idx = perm[i:i + 64]
        logits = model(x_train[idx]).squeeze(1)
        loss = criterion(logits, y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def evaluate():
    model.eval()
    with torch.no_grad():
        pred = (model(x_val).squeeze(1) > 0).float()
    tpr = (pred[y_val == 1] == 1).float().mean().item()
    tnr = (pred[y_val == 0] == 0).float().mean().item()
    return 1 - (tpr + tnr) / 2


for epoch in range(args.epochs):
    last = train_one_epoch()
    ber = evaluate()
    if epoch % 5 == 0 or epoch == args.epochs - 1:
        print(f"epoch {epoch} loss {last:.4f} balanced error {ber:.3f}")

print("FINAL " + json.dumps({"metric": "val_balanced_error", "value": ber}))

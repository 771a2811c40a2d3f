"""Wine cultivar classification (sklearn) with gradient accumulation over 4 micro-batches.

The loss of each micro-batch of 8 is divided by 4 and backpropagated; the optimizer (RMSprop) steps
and zeroes every 4th micro-batch. Validation loss each epoch with F.cross_entropy under no_grad.
Metric: validation cross-entropy.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=30)
args = p.parse_args()
torch.manual_seed(args.seed)

X, y = load_wine(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=args.seed, stratify=y)
scaler = StandardScaler().fit(X_train)
X_train = torch.tensor(scaler.transform(X_train), dtype=torch.float32)
X_val = torch.tensor(scaler.transform(X_val), dtype=torch.float32)
y_train = torch.tensor(y_train)
y_val = torch.tensor(y_val)

model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
ACCUM, MICRO = 4, 8

step = 0
for epoch in range(args.epochs):
    model.train()
    perm = torch.randperm(len(X_train))
    optimizer.zero_grad()
    for k, i in enumerate(range(0, len(perm), MICRO)):
        idx = perm[i:i + MICRO]
        loss = F.cross_entropy(model(X_train[idx]), y_train[idx]) / ACCUM
        loss.backward()
        if (k + 1) % ACCUM == 0:
            optimizer.step()
            optimizer.zero_grad()
            step += 1
    model.eval()
    with torch.no_grad():
        val_loss = F.cross_entropy(model(X_val), y_val).item()
    if epoch % 5 == 0 or epoch == args.epochs - 1:
        print(f"epoch {epoch} step {step} val {val_loss:.4f}")

print("FINAL " + json.dumps({"metric": "val_ce", "value": val_loss}))

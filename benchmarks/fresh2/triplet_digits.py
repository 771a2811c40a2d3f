"""A metric-learning embedding of sklearn's 8x8 digits trained with TripletMarginLoss.

Each step draws anchors at random, a positive of the same class and a negative of another class
(random mining, no hard negatives); the embedding is L2-normalized; plain SGD without momentum.
Evaluation is 1-nearest-neighbour in the embedding: validation points against the training set.
Metric: validation 1-NN error rate.
"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=1000)
args = p.parse_args()
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)

digits = load_digits()
X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
labels = torch.tensor(digits.target)
perm = torch.randperm(len(X))
train_idx, val_idx = perm[:1400], perm[1400:]
x_train, y_train = X[train_idx], labels[train_idx]
x_val, y_val = X[val_idx], labels[val_idx]
by_class = [np.flatnonzero(y_train.numpy() == c) for c in range(10)]


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16))

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


def sample_triplets(n):
    a = rng.integers(0, len(x_train), n)
    pos, neg = [], []
    for i in a:
        c = int(y_train[i])
        pos.append(rng.choice(by_class[c]))
        other = (c + rng.integers(1, 10)) % 10
        neg.append(rng.choice(by_class[other]))
    return x_train[a], x_train[np.array(pos)], x_train[np.array(neg)]


def knn_error():
    model.eval()
    with torch.no_grad():
        e_tr, e_va = model(x_train), model(x_val)
        nearest = torch.cdist(e_va, e_tr).argmin(1)
        err = (y_train[nearest] != y_val).float().mean().item()
    model.train()
    return err


model = Embedder()
criterion = nn.TripletMarginLoss(margin=0.3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for step in range(args.steps):
    anchor, positive, negative = sample_triplets(64)
    loss = criterion(model(anchor), model(positive), model(negative))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 300 == 0 or step == args.steps - 1:
        print(f"step {step} loss {loss.item():.4f} val 1-nn err {knn_error():.3f}")

print("FINAL " + json.dumps({"metric": "val_knn_error", "value": knn_error()}))

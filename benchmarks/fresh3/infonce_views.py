"""Contrastive pre-training (InfoNCE with a temperature) on the 8x8 digits, scored by a linear probe.

Two random views of each image (a shift of up to one pixel, random erasing of a 3x3 patch, Gaussian
noise); an MLP encoder and a projection head; the loss is the symmetric InfoNCE of the batch's
cosine-similarity matrix divided by a temperature of 0.2 (the diagonal is the positive). Labels are never
used in training. Adam. Metric: test error of a logistic-regression probe on the frozen encoder's features.
"""
import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=25)
args = p.parse_args()
torch.manual_seed(args.seed)
np.random.seed(args.seed)

digits = load_digits()
images = torch.tensor(digits.images / 16.0, dtype=torch.float32)
labels = digits.target
perm = np.random.permutation(len(images))
train_idx, test_idx = perm[:1300], perm[1300:]
train_images = images[train_idx]
TAU = 0.2


def augment(x):
    dx, dy = np.random.randint(-1, 2, size=2)
    x = torch.roll(x, shifts=(int(dx), int(dy)), dims=(1, 2))
    i, j = np.random.randint(0, 6, size=2)
    x = x.clone()
    x[:, i:i + 3, j:j + 3] = 0
    return (x + 0.1 * torch.randn_like(x)).flatten(1)


encoder = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 32))
head = nn.Sequential(nn.ReLU(), nn.Linear(32, 32))
optimizer = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)

for epoch in range(args.epochs):
    encoder.train()
    order = torch.randperm(len(train_images))
    for i in range(0, len(order) - 127, 128):
        xb = train_images[order[i:i + 128]]
        z1 = F.normalize(head(encoder(augment(xb))), dim=1)
        z2 = F.normalize(head(encoder(augment(xb))), dim=1)
        logits = z1 @ z2.T / TAU
        target = torch.arange(len(xb))
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch} infonce {loss.item():.4f}")

encoder.eval()
with torch.no_grad():
    feats = encoder(images.flatten(1)).numpy()
probe = LogisticRegression(max_iter=2000).fit(feats[train_idx], labels[train_idx])
test_err = float(1 - probe.score(feats[test_idx], labels[test_idx]))
print("FINAL " + json.dumps({"metric": "probe_test_error", "value": test_err}))

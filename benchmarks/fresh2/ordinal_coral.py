"""Ordinal regression with CORAL-style cumulative logits: 5 ordered grades from synthetic features.

One shared score per example and 4 learned thresholds (rank-consistent: the same weights for every
cut); the target is encoded as 4 binary "grade > k" labels and trained with binary cross-entropy on
logits. Data from a DataLoader, NAdam, a validation pass every epoch.
Metric: validation mean absolute error of the predicted grade.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=20)
args = p.parse_args()
torch.manual_seed(args.seed)

K = 5
g = torch.Generator().manual_seed(50 + args.seed)
X = torch.randn(3000, 12, generator=g)
latent = X[:, :4].sum(1) + torch.sin(2 * X[:, 4]) + 0.5 * X[:, 5] * X[:, 6] + 0.4 * torch.randn(3000, generator=g)
edges = torch.quantile(latent, torch.tensor([0.2, 0.4, 0.6, 0.8]))
grade = torch.bucketize(latent, edges)
levels = (grade.unsqueeze(1) > torch.arange(K - 1)).float()
train_loader = DataLoader(TensorDataset(X[:2400], levels[:2400]), batch_size=64, shuffle=True)
x_val, grade_val = X[2400:], grade[2400:]


class Coral(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 64), nn.GELU(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 1))
        self.thresholds = nn.Parameter(torch.linspace(1.0, -1.0, K - 1))

    def forward(self, x):
        return self.body(x) + self.thresholds


model = Coral()
optimizer = torch.optim.NAdam(model.parameters(), lr=2e-3)

for epoch in range(args.epochs):
    model.train()
    for xb, lb in train_loader:
        logits = model(xb)
        loss = F.binary_cross_entropy_with_logits(logits, lb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        pred = (model(x_val) > 0).sum(1)
        mae = (pred - grade_val).abs().float().mean().item()
    print(f"epoch {epoch} loss {loss.item():.4f} val mae {mae:.4f}")

print("FINAL " + json.dumps({"metric": "val_grade_mae", "value": mae}))

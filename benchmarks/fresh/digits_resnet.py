"""A tiny ResNet (two residual blocks with BatchNorm) on sklearn's 8x8 digits.

AdamW with weight decay 0.05, a linear warmup then cosine decay written as a LambdaLR stepped every
batch, a DataLoader, model.train()/model.eval() toggling and an accuracy evaluation under no_grad.
Metric: validation error rate.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=6)
args = p.parse_args()
torch.manual_seed(args.seed)

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
targets = torch.tensor(digits.target)
perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
train_idx, val_idx = perm[:1400], perm[1400:]
train_ds = TensorDataset(images[train_idx], targets[train_idx])
val_ds = TensorDataset(images[val_idx], targets[val_idx])


class Block(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class ResNet(nn.Module):
    def __init__(self, ch=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())
        self.layer1 = Block(ch)
        self.layer2 = Block(ch)
        self.fc = nn.Linear(ch, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


model = ResNet()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
val_loader = DataLoader(val_ds, batch_size=256)
total = args.epochs * len(train_loader)
warmup = 20


def lr_lambda(step):
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)

for epoch in range(args.epochs):
    model.train()
    for x, y in train_loader:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in val_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    err = 1 - correct / len(val_ds)
    print(f"epoch {epoch}: loss {loss.item():.4f}, val error {err:.4f}")

print("FINAL " + json.dumps({"metric": "val_error", "value": err}))

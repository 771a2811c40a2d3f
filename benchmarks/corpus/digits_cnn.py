"""A small CNN (conv + BatchNorm) on scikit-learn's 8x8 handwritten digits.

SGD with Nesterov momentum and a per-epoch cosine schedule, a DataLoader, F.cross_entropy, validation
every epoch; the metric is the validation error rate.
"""

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


def get_loaders(seed):
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))
    cut = int(0.8 * len(idx))
    tr, va = idx[:cut], idx[cut:]
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    train = DataLoader(TensorDataset(x[tr], y[tr]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[va], y[va]), batch_size=512)
    return train, val


def train_one_epoch(model, loader, opt):
    model.train()
    losses = []
    for images, targets in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(images), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses) / len(losses)


@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    loss_sum, errors, n = 0.0, 0, 0
    for images, targets in loader:
        out = model(images)
        loss_sum += F.cross_entropy(out, targets, reduction="sum").item()
        errors += (out.argmax(1) != targets).sum().item()
        n += len(targets)
    return loss_sum / n, errors / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=8)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    train_loader, val_loader = get_loaders(args.seed)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    for epoch in range(args.epochs):
        tl = train_one_epoch(model, train_loader, opt)
        vl, verr = evaluate(model, val_loader)
        sched.step()
        print(f"epoch {epoch}: train_loss {tl:.4f} val_loss {vl:.4f} val_err {verr:.4f}")
    print("FINAL " + json.dumps({"metric": "val_error", "value": verr}))


if __name__ == "__main__":
    main()

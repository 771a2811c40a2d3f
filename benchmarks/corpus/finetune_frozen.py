"""Transfer learning on the 8x8 digits: pre-train a small CNN on digits 0-4, then fine-tune on digits
5-9 with a new head: the backbone frozen for the first epochs, then unfrozen at a tenth of the head's
learning rate (two parameter groups in one optimizer).

The metric is the fine-tuned model's validation error on digits 5-9 (only 150 training images).
"""

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


def backbone():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(),
    )


def split(images, labels, classes, n_train, rng):
    idx = np.flatnonzero(np.isin(labels, classes))
    idx = rng.permutation(idx)
    x = torch.from_numpy(images[idx]).unsqueeze(1)
    y = torch.from_numpy(labels[idx] - min(classes))
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)

    # 1. pre-training on 0-4
    (x_pre, y_pre), _ = split(images, labels, [0, 1, 2, 3, 4], 600, rng)
    features = backbone()
    pre_head = nn.Linear(64, 5)
    pre_model = nn.Sequential(features, pre_head)
    opt = torch.optim.Adam(pre_model.parameters(), lr=2e-3)
    for epoch in range(4):
        for xb, yb in DataLoader(TensorDataset(x_pre, y_pre), batch_size=32, shuffle=True):
            loss = F.cross_entropy(pre_model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"pre-training epoch {epoch}: last loss {loss.item():.4f}")

    # 2. fine-tuning on 5-9
    (x_train, y_train), (x_val, y_val) = split(images, labels, [5, 6, 7, 8, 9], 150, rng)
    head = nn.Linear(64, 5)
    model = nn.Sequential(features, head)
    for p in features.parameters():
        p.requires_grad = False
    optimizer = torch.optim.Adam([
        {"params": features.parameters(), "lr": 2e-4},
        {"params": head.parameters(), "lr": 2e-3},
    ])
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=16, shuffle=True)
    for epoch in range(14):
        if epoch == 4:
            for p in features.parameters():
                p.requires_grad = True
        model.train()
        for xb, yb in train_loader:
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(x_val)
            val_loss = F.cross_entropy(out, y_val).item()
            val_err = (out.argmax(1) != y_val).float().mean().item()
        print(f"fine-tune epoch {epoch}: val_loss {val_loss:.4f} val_err {val_err:.4f}")
    print("FINAL " + json.dumps({"metric": "val_error", "value": val_err}))


if __name__ == "__main__":
    main()

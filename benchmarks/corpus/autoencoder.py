"""An undercomplete MLP autoencoder on scikit-learn's 8x8 digits (pixels scaled to [0, 1]).

Sigmoid output with binary cross-entropy on probabilities, Adam, a DataLoader, a fixed number of
epochs and no validation during training; the metric is the reconstruction MSE on held-out images.
"""

import argparse
import json

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class AutoEncoder(nn.Module):
    def __init__(self, d=64, code=10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, 48), nn.ReLU(), nn.Linear(48, code))
        self.decoder = nn.Sequential(nn.Linear(code, 48), nn.ReLU(), nn.Linear(48, d))

    def forward(self, x):
        return torch.sigmoid(self.decoder(self.encoder(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    pixels = load_digits().data.astype(np.float32)
    pixels = pixels / 16.0
    perm = np.random.default_rng(args.seed).permutation(len(pixels))
    train_x = torch.from_numpy(pixels[perm[:1400]])
    test_x = torch.from_numpy(pixels[perm[1400:]])
    loader = DataLoader(TensorDataset(train_x), batch_size=50, shuffle=True)

    ae = AutoEncoder()
    optim = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for epoch in range(args.epochs):
        total = 0.0
        for (batch,) in loader:
            recon = ae(batch)
            loss = F.binary_cross_entropy(recon, batch)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item()
        if epoch % 5 == 0:
            print(f"epoch {epoch} bce {total / len(loader):.4f}")

    with torch.no_grad():
        mse = F.mse_loss(ae(test_x), test_x).item()
    print("FINAL " + json.dumps({"metric": "test_recon_mse", "value": mse}))


if __name__ == "__main__":
    main()

"""Data and models shared by the plain zoo scripts (copies of trainmedic.zoo._common, without trainmedic)."""

import argparse

import torch


def regression_data(n=2048, d=16, seed=0, noise=0.1, split="train"):
    """``seed`` picks the function; ``split="val"`` draws fresh rows from the same function."""
    w = torch.randn(d, 1, generator=torch.Generator().manual_seed(seed)) / d**0.5
    g = torch.Generator().manual_seed(seed * 7919 + (0 if split == "train" else 1))
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ w) * 2 + 0.5 * torch.sin(x[:, :1] * 2) + noise * torch.randn(n, 1, generator=g)
    return x, y


def classification_data(n=2048, d=20, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, d, generator=g) * 1.5
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    return x, y


def batches(x, y, batch_size, generator):
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def mlp(d_in, d_out, hidden=64, depth=2, act=torch.nn.ReLU):
    layers = []
    d = d_in
    for _ in range(depth):
        layers += [torch.nn.Linear(d, hidden), act()]
        d = hidden
    layers.append(torch.nn.Linear(d, d_out))
    return torch.nn.Sequential(*layers)


def cli(doc):
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--no-fault", action="store_true", help="run the healthy baseline of this script")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    return p.parse_args()

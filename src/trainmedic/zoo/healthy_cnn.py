"""Healthy control: a small CNN with BatchNorm classifying synthetic 16x16 images (bars and crosses).

Convolutions, BatchNorm and dropout change the gradient statistics; trainmedic must stay quiet.
``fault`` is ignored.
"""

import torch
from torch import nn

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main


def images(n: int = 1024, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    pos = torch.randint(3, 13, (n,), generator=g)
    for i in range(n):
        p = int(pos[i])
        if y[i] in (0, 2):
            x[i, 0, p, 2:14] += 1.0
        if y[i] in (1, 2):
            x[i, 0, 2:14, p] += 1.0
    return x, y


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 16, 3),
    )


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 4) -> Result:
    torch.manual_seed(seed)
    x, y = images(seed=seed)
    model = cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    medic = Medic(model, optimizer, mode=mode, console=console)
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        model.train()
        for xb, yb in batches(x, y, 32, g):
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

"""Vanishing gradients: a 12-layer sigmoid MLP; the first layers receive almost no gradient.

Practitioner note 001: sigmoid's derivative is at most 0.25, so the backward signal shrinks geometrically
with depth. Nothing to repair automatically; trainmedic reports the first/last layer gradient ratio. The
healthy baseline (``--no-fault``) uses ReLU with Kaiming initialization.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, classification_data, main, mlp


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 4) -> Result:
    torch.manual_seed(seed)
    x, y = classification_data(seed=seed)
    model = mlp(x.shape[1], 4, hidden=64, depth=12 if fault else 3,
                act=torch.nn.Sigmoid if fault else torch.nn.ReLU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    medic = Medic(model, optimizer, mode=mode, console=console)
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 32, g):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

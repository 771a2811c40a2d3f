"""Forgotten ``optimizer.zero_grad()``: every step adds the new gradient to all the old ones.

Practitioner note 003. The update grows with the number of steps until the run diverges. The healthy
baseline (``--no-fault``) zeroes the gradients. In heal mode trainmedic notices the stale gradients at the
second step and resets them after each step from then on.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, classification_data, main, mlp


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 5) -> Result:
    torch.manual_seed(seed)
    x, y = classification_data(seed=seed)
    model = mlp(x.shape[1], 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    medic = Medic(model, optimizer, mode=mode, console=console)
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 32, g):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            if not fault:
                optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
        if medic.should_stop:
            break
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

"""Healthy control: intentional gradient accumulation (4 micro-batches per optimizer step).

Several ``backward()`` calls, one step, then ``zero_grad()``: gradients are meant to add up here, and
trainmedic must tell this apart from a forgotten ``zero_grad()`` (TM310). ``fault`` is ignored.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, classification_data, main, mlp

ACCUMULATE = 4


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 6) -> Result:
    torch.manual_seed(seed)
    x, y = classification_data(seed=seed)
    model = mlp(x.shape[1], 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    medic = Medic(model, optimizer, mode=mode, console=console)
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        optimizer.zero_grad()
        for i, (xb, yb) in enumerate(batches(x, y, 16, g)):
            loss = torch.nn.functional.cross_entropy(model(xb), yb) / ACCUMULATE
            loss.backward()
            if (i + 1) % ACCUMULATE == 0:
                medic.step(loss)
                optimizer.zero_grad()
        medic.end_epoch()
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

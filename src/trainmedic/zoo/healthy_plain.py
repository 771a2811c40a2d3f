"""Healthy control: a regression MLP with Adam, a validation set and a sensible learning rate.

Nothing is wrong here; trainmedic must not raise a single warning or error. ``fault`` is ignored.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 10) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(seed=seed)
    x_val, y_val = regression_data(n=512, seed=seed, split="val")
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, optimizer, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    val_loss = float("nan")
    for _epoch in range(epochs):
        model.train()
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        medic.end_epoch(val_loss=val_loss)
        if medic.should_stop:
            break
    return Result(medic, medic.epochs[-1]["train_loss"], val_loss=val_loss)


if __name__ == "__main__":
    main(train, __doc__)

"""Overfitting: a wide MLP trained for many epochs on 96 noisy rows memorizes them.

The validation loss reaches its best early, then climbs while the training loss keeps falling. Heal mode
first answers TM309 as a rate too high could cause it (the best epoch's weights back, the rate x0.1); when
the rise comes back it stops, restores the best epoch's weights and reports what the stop saved. The healthy baseline (``--no-fault``) has 2,000
training rows and trains for 4 epochs.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 60) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(n=96 if fault else 2000, seed=seed, noise=0.5)
    x_val, y_val = regression_data(n=512, seed=seed, noise=0.5, split="val")
    model = mlp(x.shape[1], 1, hidden=256)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    medic = Medic(model, optimizer, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs if fault else 4):
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        with torch.no_grad():
            val = float(loss_fn(model(x_val), y_val))
        medic.end_epoch(val_loss=val)
        if medic.should_stop:
            break
    with torch.no_grad():
        val_loss = float(loss_fn(model(x_val), y_val))
    return Result(medic, medic.epochs[-1]["train_loss"], val_loss=val_loss)


if __name__ == "__main__":
    main(train, __doc__)

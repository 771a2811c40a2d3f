"""Plateau: Adam at a constant, slightly too high learning rate settles at a noise floor and stays there.

Practitioner note 002: start from a learning rate and lower it when the metric stops improving. Heal mode
multiplies the learning rate by 0.1 when the validation loss has not improved for ``plateau_patience``
epochs (ReduceLROnPlateau semantics). The healthy baseline (``--no-fault``) trains for fewer epochs.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 20) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(n=4096, seed=seed, noise=0.3)
    x_val, y_val = regression_data(n=1024, seed=seed, noise=0.3, split="val")
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    scheduler = None if fault else torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2)
    medic = Medic(model, optimizer, scheduler=scheduler, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    val_loss = float("nan")
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 64, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), y_val))
        medic.end_epoch(val_loss=val_loss)
        if medic.should_stop:
            break
    with torch.no_grad():
        val_loss = float(loss_fn(model(x_val), y_val))
    return Result(medic, medic.epochs[-1]["train_loss"], val_loss=val_loss)


if __name__ == "__main__":
    main(train, __doc__)

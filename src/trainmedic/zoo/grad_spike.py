"""Corrupted batches: now and then a batch arrives with features scaled by 100 (a unit change upstream).

Each such batch produces a gradient two orders of magnitude above the usual one, and one SGD step with it
undoes much of the training. Heal mode clips those steps to the running bound (ZClip/AutoClip style).
The healthy baseline (``--no-fault``) has no corrupted batches.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 8) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(seed=seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    medic = Medic(model, optimizer, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    step = 0
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 32, g):
            if fault and step % 97 == 50:
                xb = xb * 100.0
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
            step += 1
        medic.end_epoch()
    x_val, y_val = regression_data(n=512, seed=seed, split="val")
    with torch.no_grad():
        val_loss = float(loss_fn(model(x_val), y_val))
    return Result(medic, medic.epochs[-1]["train_loss"], val_loss=val_loss)


if __name__ == "__main__":
    main(train, __doc__)

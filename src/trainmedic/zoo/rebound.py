"""Loss rebound after a learning-rate jump: a hand-written "restart" multiplies Adam's lr by 100 at epoch 4.

Practitioner note 004: the loss falls, then suddenly rebounds and stays up. Their procedure is to keep a
checkpoint whenever the loss improves, notice the rebound, reload and lower the learning rate. Heal mode
does that automatically. The healthy baseline (``--no-fault``) keeps the learning rate.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 14) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(seed=seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    medic = Medic(model, optimizer, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if fault and epoch == 4:
            for group in optimizer.param_groups:
                group["lr"] *= 100
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
        if medic.should_stop:
            break
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

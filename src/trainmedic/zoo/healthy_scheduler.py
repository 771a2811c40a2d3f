"""Healthy control: linear warmup then cosine decay, stepped every batch by the Medic.

The learning rate rises 20-fold during warmup and falls to zero at the end; neither is a fault.
``fault`` is ignored.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 8) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(seed=seed)
    model = mlp(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    steps = epochs * (len(x) // 32)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.05, total_iters=steps // 10)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps - steps // 10)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[steps // 10])
    medic = Medic(model, optimizer, scheduler=scheduler, scheduler_interval="step", mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 32, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)  # also steps the scheduler
        medic.end_epoch()
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

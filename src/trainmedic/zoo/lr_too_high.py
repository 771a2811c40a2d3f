"""Learning rate too high: the linear net of practitioner note 001, trained by SGD at lr=2.0, blows up.

Note 002: the learning rate is the first knob. Past 2/L (L the curvature of the loss) every step overshoots
further and the loss grows to inf within a few dozen steps. The healthy baseline (``--no-fault``) uses
lr=0.5. In heal mode trainmedic names the climb (TM305) within the first steps, restarts from the initial
weights, probes the rates below the one that failed for a few dozen steps on the next batches, and
continues at the rate the probe supports after a linear warmup (the ``probe`` event says what was tried
and why that rate).
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, regression_data


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 40) -> Result:
    torch.manual_seed(seed)
    x, y = regression_data(seed=seed)
    model = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0 if fault else 0.5)
    medic = Medic(model, optimizer, mode=mode, console=console)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 256, g):
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

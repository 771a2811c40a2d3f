"""Learning rate too low: plain SGD at lr=1e-5 on a classifier barely moves in 300 steps.

The healthy baseline (``--no-fault``) uses lr=0.05. Nothing to repair automatically: trainmedic reports
the tiny update/weight ratio and suggests a learning-rate range test.
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, classification_data, main, mlp


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 5) -> Result:
    torch.manual_seed(seed)
    x, y = classification_data(seed=seed)
    model = mlp(x.shape[1], 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5 if fault else 0.05)
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

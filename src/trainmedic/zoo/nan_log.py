"""NaN from ``log`` of a non-positive prediction: a Poisson loss written by hand on a linear head.

Practitioner note 000: counts are predicted with ``pred - y * log(pred)``, but nothing keeps ``pred``
positive. After a few dozen steps some predictions cross zero and the loss turns NaN; forensics replays
the batch and names ``torch.log`` and the range it received (TM210). The healthy
baseline (``--no-fault``) predicts the log-rate and uses ``exp`` (what ``PoissonNLLLoss`` does).
"""

import torch

from trainmedic import Medic
from trainmedic.zoo._common import Result, batches, main, mlp


def count_data(n: int = 2048, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    rate = torch.exp(0.8 * x[:, 0] - 0.6 * x[:, 1] - 0.3)
    return x, torch.poisson(rate, generator=g).unsqueeze(1)


def poisson_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y * torch.log(out)).mean()  # log of a prediction that can go <= 0


def train(mode: str = "watch", fault: bool = True, seed: int = 0, console: bool = False, epochs: int = 6) -> Result:
    torch.manual_seed(seed)
    x, y = count_data(seed=seed)
    model = mlp(x.shape[1], 1, hidden=32)
    with torch.no_grad():
        model[-1].bias.fill_(float(y.mean()) if fault else float(y.mean().log()))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = poisson_loss if fault else (lambda out, y: torch.nn.functional.poisson_nll_loss(out, y, log_input=True))
    medic = Medic(model, optimizer, mode=mode, console=console, loss_fn=loss_fn)  # loss_fn: forensics can replay
    g = torch.Generator().manual_seed(seed)
    for _epoch in range(epochs):
        for xb, yb in batches(x, y, 64, g):
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss, batch=(xb, yb))
        medic.end_epoch()
        if medic.should_stop:
            break
    return Result(medic, medic.epochs[-1]["train_loss"])


if __name__ == "__main__":
    main(train, __doc__)

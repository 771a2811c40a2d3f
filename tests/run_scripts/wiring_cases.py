"""Ordinary training set-ups with one wiring or data fault each, and their healthy twins.

``build(case, fault)`` returns ``(net, loss_fn, x, y, params)``: the model, the loss as the script writes it,
the data, and the parameters the optimizer is built on. Nothing here imports trainmedic: the same set-up is
trained by ``wiring.py`` under ``trainmedic run``, by a ``Medic`` loop, and inside a LightningModule.
"""

from __future__ import annotations

import torch
from torch import nn

N, D = 256, 8


def _regression(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(N, D, generator=g)
    y = (x[:, :1] * 0.8 - x[:, 1:2] * 0.5) + 0.1 * torch.randn(N, 1, generator=g)
    return x, y


def _mlp(out: int = 1, *tail: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, out), *tail)


def hand_written_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((pred - y) ** 2).mean()


class Distill:
    """A distillation loss: KL divergence from the teacher's probabilities, the student's log-probabilities
    as the input (``probs``: the student's probabilities instead, note 003's misused loss API)."""

    def __init__(self, probs: bool) -> None:
        self.kl = nn.KLDivLoss(reduction="batchmean")
        self.probs = probs

    def __call__(self, pred: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student = torch.softmax(pred, dim=1) if self.probs else torch.log_softmax(pred, dim=1)
        return self.kl(student, teacher)


def build(case: str, fault: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = _regression(g)
    net: nn.Module = _mlp()
    loss_fn = nn.MSELoss()
    if case == "bcast_mse":  # (B,1) prediction, (B,) target through nn.MSELoss
        y = y[:, 0] if fault else y
    elif case == "bcast_hand":  # the same trap in a hand-written loss (note 000)
        loss_fn = hand_written_mse
        y = y[:, 0] if fault else y
    elif case == "softmax_ce":  # probabilities into CrossEntropyLoss
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        net = _mlp(3, nn.Softmax(dim=1)) if fault else _mlp(3)
        loss_fn = nn.CrossEntropyLoss()
    elif case == "logsoftmax_bce":  # LogSoftmax over one unit (always 0) fed to BCELoss
        y = (x[:, :1] > 0).float()
        net = _mlp(1, nn.LogSoftmax(dim=1)) if fault else _mlp(1, nn.Sigmoid())
        loss_fn = nn.BCELoss()
    elif case == "labels_12":  # binary labels coded 1/2
        y = (x[:, :1] > 0).float() + (1.0 if fault else 0.0)
        loss_fn = nn.BCEWithLogitsLoss()
    elif case == "relu_head":  # a ReLU head on a standardized (signed) target
        y = (y - y.mean()) / y.std()
        net = _mlp(1, nn.ReLU()) if fault else _mlp(1)
    elif case == "counts_mse":  # a sparse count target trained with MSE (note 000)
        rate = torch.exp(x[:, :1] - 1.5)
        y = torch.poisson(rate, generator=g)
        if not fault:
            y, loss_fn = y, nn.PoissonNLLLoss(log_input=True)
    elif case == "skewed_mse":  # a raw positive skewed target, SalePrice-like (note 001)
        price = torch.exp(12 + 0.4 * x[:, :1] + 0.3 * torch.randn(N, 1, generator=g))
        y = price if fault else torch.log(price) - 12
    elif case == "unscaled":  # features on wildly different scales, far from zero
        if fault:
            x = x * torch.tensor([1.0, 1e4, 1.0, 1.0, 50.0, 1.0, 1.0, 1.0]) + torch.tensor([0, 0, 2000.0, 0, 0, 0, 0, 0])
    elif case == "sentinel":  # sensor rows holding a -9999 "missing" sentinel
        if fault:
            x[torch.arange(0, N, 16), 3] = -9999.0
    elif case == "nan_rows":  # a few input rows with NaN
        if fault:
            x[torch.arange(5, N, 64), 2] = float("nan")
    elif case == "unfreeze_typo":  # a frozen encoder whose unfreeze never took effect
        for p in net[0].parameters():
            p.requires_grad_(False)
        for p in net[0].parameters():  # "unfreeze" the encoder
            if fault:
                p.requires_grad_ = True  # a typo: assigns an attribute, the layer stays frozen
            else:
                p.requires_grad_(True)
    elif case == "kl_probs":  # a student's probabilities into KLDivLoss, which wants log-probabilities
        teacher = nn.Linear(D, 3)
        with torch.no_grad():
            y = torch.softmax(2 * teacher(x), dim=1)
        net, loss_fn = _mlp(3), Distill(probs=fault)
    else:
        raise ValueError(case)
    return net, loss_fn, x, y, list(net.parameters())


#: case -> the codes a checker must raise on the faulty set-up
EXPECT = {
    "bcast_mse": {"TM201"}, "bcast_hand": {"TM201"}, "softmax_ce": {"TM202"}, "logsoftmax_bce": {"TM202"},
    "labels_12": {"TM203"}, "relu_head": {"TM211"}, "counts_mse": {"TM111"}, "skewed_mse": {"TM112"},
    "unscaled": {"TM108"}, "sentinel": {"TM109"}, "nan_rows": {"TM101"}, "unfreeze_typo": {"TM204"},
    "kl_probs": {"TM202"},
}

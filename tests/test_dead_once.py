"""A network that dies mid-run is one finding, not two: TM318 names the death (the first layer's gradient
exactly 0 after it was not), and TM311's dead-network form (every layer's gradient 0) does not report the
same event again while no gradient reaches the first layer. TM311's sampled ReLU layers still come (they
name the layer that died: tests/test_dead_relu.py). A network dead from its first step (zero init, no
TM318) is still TM311's (tests/test_detectors_divergence.py)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainmedic import Medic


def _run(kill_at: int | None, steps: int = 400):
    torch.manual_seed(0)
    x = torch.randn(2048, 8)
    y = (x[:, :1] * 2 + x[:, 1:2].sin()).squeeze(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = Medic(model, opt, console=False)
    g = torch.Generator().manual_seed(0)
    for t in range(steps):
        if t == kill_at:  # a blow-up's aftermath: every ReLU of both hidden layers off for every input
            with torch.no_grad():
                model[0].bias.fill_(-1e4)
                model[2].bias.fill_(-1e4)
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = F.mse_loss(model(x[idx]).squeeze(1), y[idx])
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(x[idx], y[idx]))
        if (t + 1) % 50 == 0:
            medic.end_epoch()
    return medic


def test_a_death_mid_run_is_reported_once_as_tm318():
    medic = _run(kill_at=100)
    codes = [f.code for f in medic.findings]
    dead = [f for f in medic.findings if f.code == "TM318"]
    assert dead and dead[0].evidence["since_step"] in (100, 101)
    assert not [f for f in medic.findings if f.code == "TM311" and f.evidence.get("dead") == "network"], codes


def test_a_healthy_twin_has_neither():
    codes = {f.code for f in _run(kill_at=None).findings}
    assert not codes & {"TM311", "TM318"}

"""Cause before symptom, and a dead network named dead (issue 11).

Real tiny trainings:

* a learning rate so high that the loss climbs to NaN within a few steps: TM305 (the learning rate) is
  the first finding, before TM301/TM302; a NaN out of a steady loss (one dirty row) stays TM301 alone;
* Adam at lr 5 on a small classifier: the loss jumps from 0.69 to ~1e4 at the first step and stays there,
  inside the warm-up before any best exists: TM305 within the first check windows; lr 0.05 stays quiet;
* a mid-run learning-rate jump: TM305 at the step the climb is seen, not after TM303;
* a ReLU network whose every weight gradient is exactly 0 (zero init): TM311 "dead", not TM304.
"""

from __future__ import annotations

import torch

from trainmedic import Medic


def classifier(lr: float, *, adam: bool = False, steps: int = 120, nan_at: int | None = None,
               zero_init: bool = False) -> Medic:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 10, generator=g)
    y = (x[:, :3].sum(1, keepdim=True) > 0).float()
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 1))
    if zero_init:
        for p in model.parameters():
            torch.nn.init.zeros_(p)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if adam
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    medic = Medic(model, opt, console=False)
    for t in range(steps):
        idx = torch.randint(0, 2000, (32,), generator=g)
        xb = x[idx].clone()
        if t == nan_at:
            xb[0, 0] = float("nan")
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    return medic


def regression(lr: float, *, jump_at: int = 0, steps: int = 100) -> Medic:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 10, generator=g)
    y = x[:, :3].sum(1, keepdim=True) * 3
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, console=False)
    for t in range(steps):
        if t == jump_at:
            for group in opt.param_groups:
                group["lr"] = lr
        idx = torch.randint(0, 2000, (32,), generator=g)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    return medic


def first_warning(medic: Medic):
    return next(f for f in medic.findings if f.severity in ("warning", "error"))


def test_loss_that_climbs_to_nan_names_the_learning_rate_first():
    medic = regression(lr=1.0)
    codes = [f.code for f in medic.findings]
    assert "TM301" in codes or "TM302" in codes
    first = first_warning(medic)
    assert first.code == "TM305" and first.evidence["cause"] == "learning rate", codes
    nan_step = min(f.step for f in medic.findings if f.code in ("TM301", "TM302"))
    assert first.step < nan_step


def test_nan_out_of_a_steady_loss_is_not_blamed_on_the_learning_rate():
    medic = classifier(0.05, nan_at=60)
    # the batch's NaN row (its cause, named first since issue 11's round four), then the NaN loss: no TM305
    assert [(f.code, f.step) for f in medic.findings] == [("TM101", 60), ("TM301", 60)]


def test_divergence_inside_the_warmup_is_visible():
    medic = classifier(5.0, adam=True)
    losses = [r["loss"] for r in medic.history.as_dicts()]
    assert losses[0] < 1.0 and min(losses[1:20]) > 100  # 0.69, then up by orders of magnitude at once
    first = first_warning(medic)
    assert first.code == "TM305" and first.evidence.get("early") and first.step <= medic.cfg.warmup_steps
    assert not [f for f in classifier(0.05).findings if f.severity != "info"]


def test_mid_run_learning_rate_jump_is_a_divergence_before_a_gradient_spike():
    medic = regression(lr=1.0, jump_at=60)
    first = first_warning(medic)
    found = [(f.code, f.step) for f in medic.findings]
    # the loop's raise (TM319) is named at the blow-up it causes, with the divergence (TM305) at the same step
    assert first.code == "TM319" and first.evidence["raised_at"] == 60 and 60 <= first.step < 70, found
    assert ("TM305", first.step) in found
    assert first.step < min(f.step for f in medic.findings if f.code in ("TM301", "TM302"))


def test_dead_network_is_dead_not_vanishing():
    medic = classifier(0.05, zero_init=True)
    codes = [f.code for f in medic.findings]
    assert "TM304" not in codes, codes
    (dead,) = [f for f in medic.findings if f.code == "TM311"]
    assert dead.evidence["dead"] == "network" and dead.evidence["last_layer_norm"] == 0.0

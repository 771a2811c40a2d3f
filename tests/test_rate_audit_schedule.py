"""The rate audit (TM343) under a learning-rate scheduler (heal/audit_schedule.py), on real tiny trainings.

The 4-class MLP of ``test_rate_audit.py`` (32 steps an epoch, validated after each) trained with AdamW and a
linear warmup then cosine decay (a ``LambdaLR`` stepped per batch, ``Medic(scheduler=...,
scheduler_interval="step")``):

* at 60x a good constant rate (6x the best rate under this schedule) the annealed replay finds a lower rate
  better; heal restarts from the initial weights with the scheduler where it was and every rate, its base
  rates included, scaled (no probe, no warmup of heal's own): at every later step the optimizer's rate is
  the scale times the plain schedule's, and the run ends well below the plain one. With
  ``rate_audit_restart=False`` heal cuts instead, and the cut survives the schedule the same way;
* at a good rate (1e-3, and 1e-2, the best under this schedule) the audit runs, finds nothing, and the run
  ends bit for bit where the plain loop ends;
* while the warmup still raises the rate the audit waits for a later evaluation;
* a ``CyclicLR`` (whose bounds a cut does not scale) gets a TM904 and no audit;
* a cut made before a ``SequentialLR`` milestone survives it (the chained schedulers' base rates are scaled).
"""

from __future__ import annotations

import math

import pytest
import torch
from _four_class import DATA, mlp
from torch import nn
from torch.nn import functional as F

from trainmedic import Medic
from trainmedic.callbacks import MedicCallback
from trainmedic.heal.actions import Actuator
from trainmedic.heal.rate_audit import RateAudit

STEPS_PER_EPOCH = 32


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    return factor


def train(lr: float, mode: str, *, epochs: int = 6, seed: int = 0, warmup: int = 8, cyclic: bool = False,
          thresholds: dict | None = None, callbacks=()):
    """Returns (medic or None, model, optimizer, validation per epoch, the optimizer's rate before each step,
    the RNG after)."""
    x, y, xv, yv = DATA
    torch.manual_seed(seed)
    model = mlp(0.2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    if cyclic:
        sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=lr / 10, max_lr=lr, step_size_up=16)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, epochs * STEPS_PER_EPOCH))
    medic = None
    if mode != "plain":
        medic = Medic(model, opt, scheduler=sched, scheduler_interval="step", mode=mode, console=False,
                      loss_fn=F.cross_entropy, thresholds=thresholds, callbacks=callbacks)
    vals, rates = [], []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            rates.append(opt.param_groups[0]["lr"])
            if medic is None:
                opt.step()
                sched.step()
            else:
                medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            v = float(F.cross_entropy(model(xv), yv))
        vals.append(v)
        if medic is not None:
            medic.end_epoch(val_loss=v)
    return medic, model, opt, vals, rates, torch.get_rng_state()


def _audit(medic) -> RateAudit:
    return next(cb for cb in medic.callbacks if isinstance(cb, RateAudit))


def _severe(medic) -> list[str]:
    return [f.code for f in medic.findings if f.severity in ("warning", "error")]


def test_adamw_far_too_high_under_warmup_cosine_restarts_with_the_schedule_scaled():
    lr = 6e-2  # 60x the constant-rate good rate, 6x this schedule's best (1e-2)
    _, _, _, plain, plain_rates, _ = train(lr, "plain")
    medic, _, _, healed, rates, _ = train(lr, "heal")
    found = [f for f in medic.findings if f.code == "TM343"]
    assert len(found) == 1, [(f.code, f.step) for f in medic.findings]
    f = found[0]
    assert f.evidence["scheduler"] == "LambdaLR" and f.evidence["annealed"] is True
    assert min(f.evidence["ratios"].values()) < 1 - medic.cfg.rate_audit_gain
    assert f.action.startswith("restart from step 0, schedule x")
    acts = [e for e in medic.events if e.get("type") == "action"]
    assert [(a["action"], a["reason"], a["to_step"]) for a in acts] == [("rollback", "TM343", 0)]  # no probe
    back, scale = acts[0]["step"], float(f.action.rsplit("x", 1)[1])
    assert back == f.step and scale < 1 / 2.9
    # the schedule kept its place and its shape, x scale: the rolled-back step did not step the scheduler
    assert rates[:back] == plain_rates[:back]
    for step in range(back + 1, len(rates)):
        assert rates[step] == pytest.approx(plain_rates[step - 1] * scale, rel=1e-9), step
    assert healed[-1] < 0.8 * plain[-1], (healed, plain)
    assert _severe(medic) == ["TM343"]


def test_without_a_restart_the_cut_scales_the_schedule():
    lr = 6e-2
    _, _, _, plain, plain_rates, _ = train(lr, "plain")
    medic, _, _, _, rates, _ = train(lr, "heal", thresholds={"rate_audit_restart": False})
    f = next(f for f in medic.findings if f.code == "TM343")
    assert f.action.startswith("lr x")
    acts = [e for e in medic.events if e.get("type") == "action"]
    assert acts and all(a["action"] == "lr-change" and a["reason"] == "TM343" for a in acts)
    # from each cut on, every step ran at the product of the cuts so far times the plain schedule's rate
    product, k = 1.0, 0
    for step, (r, p) in enumerate(zip(rates, plain_rates)):
        while k < len(acts) and acts[k]["step"] <= step:
            product *= acts[k]["lr_after"] / acts[k]["lr_before"]
            k += 1
        assert r == pytest.approx(p * product, rel=1e-9), step
    assert product < 1 / 2.9


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_a_good_rate_under_warmup_cosine_is_audited_and_left_bit_identical(lr):
    # 1e-2 ends best under this schedule; a constant-rate replay found lower rates 5-10 % better there (seeds
    # 0 and 2) and cut it; the annealed replay does not (heal/audit_schedule.py)
    _, model_p, _, plain, _, rng_p = train(lr, "plain")
    medic, model_h, _, healed, _, rng_h = train(lr, "heal")
    audit = _audit(medic)
    assert audit.active and audit.runs >= 1  # it ran: the schedule held over its replays
    assert not _severe(medic) and not [f for f in medic.findings if f.code in ("TM343", "TM904")]
    assert healed == plain and torch.equal(rng_h, rng_p)
    for (k, a), b in zip(model_h.state_dict().items(), model_p.state_dict().values()):
        assert torch.equal(a, b), k


class RunsAt(MedicCallback):
    """The rate audit's count of runs at each evaluation (added after it, so it reads the count after it)."""

    name = "runs-at"

    def __init__(self) -> None:
        self.runs: list[int] = []

    def on_epoch_end(self, medic, epoch, record):
        self.runs.append(_audit(medic).runs)


def test_the_audit_waits_while_the_warmup_raises_the_rate():
    # a 56-step warmup: at the first evaluation (step 32) and the second (step 64: the rate rose from 41/56
    # of the peak over the replayed steps) the rate is still climbing; the audit runs at the third (step 96:
    # the cosine has fallen from 0.99 to 0.91 of the peak over the replayed steps, within SPREAD)
    runs = RunsAt()
    medic, *_ = train(1e-3, "heal", warmup=56, epochs=8, callbacks=[runs])  # cosine over 200 steps
    assert runs.runs == [0, 0, 1, 1, 1, 1, 1, 1]
    assert not [f for f in medic.findings if f.code in ("TM343", "TM904")]


def test_a_cyclic_schedule_is_not_audited_and_says_why():
    medic, *_ = train(3e-2, "heal", epochs=2, cyclic=True)
    audit = _audit(medic)
    assert audit.runs == 0 and not audit.batches
    notes = [f for f in medic.findings if f.code == "TM904"]
    assert notes and "CyclicLR" in notes[0].message
    assert "TM343" not in {f.code for f in medic.findings}


def test_a_cut_before_a_sequential_milestone_survives_it():
    model = nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
    for _ in range(3):
        opt.step()
        sched.step()
    Actuator(model, opt, sched).scale_lr(0.1)
    for _ in range(3):  # past the milestone: CosineAnnealingLR starts again from its own base rates
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 1 / 20)))

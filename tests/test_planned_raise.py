"""TM319 and a schedule that raises the rate by design (signals/stepping.py::raises_by_design).

The same tiny run twice: an MLP on a 2-class problem, SGD with momentum, the rate following SGDR's warm
restarts (``CosineAnnealingWarmRestarts``, stepped every step, peak 0.5). Once the scheduler sets the rate
and Medic is told (``scheduler=``); once the loop writes the very same rates into the optimizer by hand.
The trajectories are identical, bit for bit. A warm restart from an annealed rate is a raise of 20x or more
and the loss level after it rises: by hand that is TM319 (a loop that raised its rate), under the scheduler
it is the schedule working and no finding (benchmarks/fresh3 sgdr_imbalanced: a false TM319 on a healthy
run under every entry point before)."""

import torch
from sklearn.datasets import make_classification
from torch.nn import functional as F

from trainmedic import Medic


def _run(by_hand: bool):
    x, y = make_classification(n_samples=1024, n_features=20, n_informative=6, flip_y=0.0, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=120, eta_min=1e-4)
    rates = []
    for _ in range(480):  # the rates the scheduler sets: four cycles of 120 steps
        rates.append(opt.param_groups[0]["lr"])
        sched.step()
    for g in opt.param_groups:
        g["lr"] = rates[0]
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=120, eta_min=1e-4)
    medic = Medic(model, opt, console=False, scheduler=None if by_hand else sched)
    losses = []
    for t in range(480):
        if by_hand:
            for g in opt.param_groups:
                g["lr"] = rates[t]
        assert opt.param_groups[0]["lr"] == rates[t]
        idx = torch.arange(t * 32, t * 32 + 32) % 1024
        loss = F.binary_cross_entropy_with_logits(model(x[idx]).squeeze(1), y[idx])
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
        losses.append(loss.item())
        if not by_hand:
            sched.step()
    medic.close()
    return medic, losses, rates


def test_a_warm_restart_is_no_harmful_raise_but_the_same_raise_by_hand_is():
    by_hand, hand_losses, rates = _run(True)
    scheduled, sched_losses, _ = _run(False)
    assert hand_losses == sched_losses  # the same run
    assert rates[120] / rates[119] > 20  # a warm restart: from the annealed rate back to the peak
    raised = [f for f in by_hand.findings if f.code == "TM319"]
    assert raised and raised[0].evidence["raised_at"] in (120, 240, 360)
    assert not [f for f in scheduled.findings if f.code == "TM319"]


def test_under_run_a_warm_restart_scheduler_is_known_and_its_restart_is_no_harmful_raise(tmp_path):
    """``CosineAnnealingWarmRestarts`` defines its own ``step`` (constructor included), which never passes
    through ``LRScheduler.step``: ``run`` did not know it and reported its restart as TM319."""
    import contextlib
    import io
    import json
    from pathlib import Path

    from trainmedic.instrument.runner import run_script

    script = Path(__file__).resolve().parent / "run_scripts" / "sgdr.py"
    codes = {}
    for argv in ([], ["--by-hand"]):
        out = tmp_path / ("hand" if argv else "sched")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert run_script(str(script), argv, out=out, console=False, summary=False) == 0
        codes[bool(argv)] = [f["code"] for f in json.loads((out / "findings.json").read_text())["findings"]]
    assert "TM319" in codes[True] and "TM319" not in codes[False]

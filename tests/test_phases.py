"""Training phases (issue 11, held-out corpus): a program that pre-trains, then fine-tunes with a NEW optimizer.

Real two-phase trainings (``run_scripts/two_phases.py``: pre-training 75 steps, fine-tuning 90 steps, each
shorter than the early window ``slow_window`` = 200) under ``trainmedic run`` and under the Medic API.
Before phases, under ``run`` the fine-tuning's driver watched a bare list of tensors without inputs (its
model was never discovered), and neither phase lasted long enough for the slow checks to judge it.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from trainmedic.instrument.runner import run_script

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "two_phases.py"
SEVERE = ("warning", "error")


def run_phases(tmp_path: Path, *argv: str) -> list[dict]:
    """The findings of ``two_phases.py argv`` under ``run``."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = run_script(str(SCRIPT), list(argv), out=tmp_path, console=False, summary=False)
    assert code == 0
    return json.loads((tmp_path / "findings.json").read_text())["findings"]


def medic_phases(*argv: str) -> list:
    """The two Medics (one per phase) of ``two_phases.py --medic argv``."""
    ns: dict = {"__name__": "two_phases"}
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), ns)
    medics: list = []
    with contextlib.redirect_stdout(io.StringIO()):
        ns["main"](["--medic", *argv], medics=medics)
    assert len(medics) == 2
    return medics


@pytest.mark.parametrize("seed", ["0", "1"])
def test_healthy_two_phases_are_silent_and_the_fine_tuning_watches_its_own_model(tmp_path, seed, drivers_at_finish):
    found, drivers = run_phases(tmp_path, "--seed", seed), drivers_at_finish
    assert [f["code"] for f in found if f["severity"] in SEVERE] == []
    # the fine-tuning's model is discovered (the body and the new head), not a bare list of tensors
    assert drivers == [("Sequential", 75), ("Sequential", 90)]  # the body frozen, then unfrozen: no warning
    medics = medic_phases("--seed", seed)
    assert [[f.code for f in m.findings if f.severity in SEVERE] for m in medics] == [[], []]


@pytest.mark.parametrize("seed", ["0", "1"])
def test_a_pre_training_rate_too_low_is_named_when_the_fine_tuning_starts(tmp_path, seed):
    """75 steps at a rate 1000x too low: the loss stays put; the phase ends when the next optimizer steps."""
    found = run_phases(tmp_path, "--fault", "pre_lr_low", "--seed", seed)
    slow = [f for f in found if f["code"] == "TM315"]
    assert [(f["step"], f["evidence"]["optimizer"], f["evidence"]["steps"]) for f in slow] == [(74, 0, 75)]
    assert slow[0]["evidence"]["update_ratio"] < 1e-4 and slow[0]["evidence"]["relative_gain"] < 0.02
    pre, fine = medic_phases("--fault", "pre_lr_low", "--seed", seed)
    assert [(f.code, f.step, f.evidence["steps"]) for f in pre.findings] == [("TM315", 74, 75)]
    assert [f.code for f in fine.findings if f.severity in SEVERE] == []


@pytest.mark.parametrize("seed", ["0", "1"])
def test_a_fine_tuning_rate_too_low_is_named_at_the_end_of_the_script(tmp_path, seed):
    found = run_phases(tmp_path, "--fault", "lr_low", "--seed", seed)
    assert [(f["code"], f["step"], f["evidence"]["optimizer"], f["evidence"]["steps"])
            for f in found if f["severity"] in SEVERE] == [("TM315", 89, 1, 90)]


def test_the_fine_tuning_model_is_checked_at_its_first_step(tmp_path):
    """Every fine-tuned parameter redrawn from N(0, 1): the weight-scale check needs the model's layers."""
    found = run_phases(tmp_path, "--fault", "normal_init")
    gains = [f for f in found if f["code"] == "TM205" and f["evidence"].get("measure") == "weight std x sqrt(fan_in)"]
    assert [(f["step"], f["evidence"]["optimizer"]) for f in gains] == [(0, 1)]
    assert [la["layer"] for la in gains[0]["evidence"]["layers"]] == ["1.weight"]  # the new head (the body is frozen)
    _, fine = medic_phases("--fault", "normal_init")
    assert [f.step for f in fine.findings if f.code == "TM205"][:1] == [0]


def test_an_unfreeze_typo_between_epochs_is_named_at_that_epoch_end(tmp_path):
    """``p.requires_grad_ = True`` before the fine-tuning's third epoch (step 30): the body stays frozen.
    The checks on the steps alone look at steps 0-2 and every 200th; the epoch end looks at every one."""
    found = run_phases(tmp_path, "--fault", "freeze_typo")
    typo = [f for f in found if f["code"] == "TM204"]
    assert [(f["step"], f["evidence"]["optimizer"]) for f in typo] == [(29, 1)]
    assert typo[0]["evidence"]["frozen_by_typo"] == ["0.0.weight", "0.0.bias", "0.2.weight", "0.2.bias"]
    _, fine = medic_phases("--fault", "freeze_typo")
    assert [(f.code, f.step) for f in fine.findings if f.severity in SEVERE] == [("TM204", 44)]


def _scaled_body():
    """A body whose weights were "trained" to 12x their default scale: its activations grow ~5x per layer."""
    import torch
    from torch import nn

    body = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
    with torch.no_grad():
        for m in body:
            if isinstance(m, nn.Linear):
                m.weight.mul_(12.0)
    return body


def _medic_phase(body, x, y, classes, earlier=None, batch=False):
    """Three steps of ``body`` + a new head under a new ``Medic`` (a phase of its own), after the ``earlier``
    phase's Medics stepped; returns the Medic. ``batch``: pass the loss function and the batch (pre-flight)."""
    import torch
    from torch import nn

    from trainmedic import Medic

    model = nn.Sequential(body, nn.Linear(32, classes))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, console=False, loss_fn=nn.CrossEntropyLoss() if batch else None)
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        medic.step(loss, batch=(x, y) if batch else None)
    return medic


def test_a_fine_tuning_over_a_pre_trained_body_is_not_judged_as_an_initialization():
    """Pre-flight's TM205 reads the first step as the model's initialization. Over a body trained by an
    earlier phase's optimizer it leaves that body out; the same model seen without an earlier phase is
    judged in full (the control: both forms of TM205 fire on it)."""
    import torch

    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    init_forms = {"activation std", "weight std x sqrt(fan_in)", "weight-gradient RMS"}  # pre-flight's

    def tm205(medic):
        return sorted({f.evidence.get("measure") for f in medic.findings if f.code == "TM205"} & init_forms)

    assert tm205(_medic_phase(_scaled_body(), x, y, 3, batch=True)) == ["activation std", "weight std x sqrt(fan_in)"]
    body = _scaled_body()
    pre = _medic_phase(body, x, y, 4)  # the pre-training (its Medic alive, as in a script: it is the earlier phase)
    assert tm205(_medic_phase(body, x, y, 3, batch=True)) == [] and pre.step_count == 3


def test_units_silent_on_a_fine_tuning_batch_are_no_dead_init_for_a_pre_trained_body():
    """TM207 (ReLU units never positive on the first batch) is an initialization check: a pre-trained body
    whose units stay silent on one batch (a batch of one class, features learnt for the others) is not a
    bad init; the same body seen without an earlier phase is judged (the control fires)."""
    import torch
    from torch import nn

    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))

    def silent_body():
        torch.manual_seed(0)
        body = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        with torch.no_grad():
            body[0].bias[:28] = -50.0  # 28 of 32 units never positive on this batch
        return body

    def tm207(medic):
        return [f.step for f in medic.findings if f.code == "TM207"]

    assert tm207(_medic_phase(silent_body(), x, y, 3, batch=True)) == [0]  # the control: judged as an init
    body = silent_body()
    pre = _medic_phase(body, x, y, 4)  # the pre-training (its Medic alive, as in a script: it is the earlier phase)
    assert tm207(_medic_phase(body, x, y, 3, batch=True)) == [] and pre.step_count == 3


@pytest.mark.parametrize("seed", ["0", "1"])
def test_medic_close_ends_the_last_phase_and_names_a_rate_too_low(seed):
    """The fine-tuning (90 steps, both rates 1000x too low) is the script's last phase: no later Medic ends it,
    and no step or epoch end knows that it is the last. ``medic.close()`` is the end of training: the last
    slow check runs then (as ``run`` does at exit), not before; a second close adds nothing."""
    pre, fine = medic_phases("--fault", "lr_low", "--seed", seed)
    assert [f.code for f in fine.findings if f.severity in SEVERE] == []  # before close: unnamed
    fine.close()
    slow = [(f.code, f.step, f.evidence["steps"]) for f in fine.findings if f.severity in SEVERE]
    assert slow == [("TM315", 89, 90)]
    assert fine.findings[-1].evidence["update_ratio"] < 1e-4
    fine.close()
    pre.close()  # its phase ended when the fine-tuning started: nothing new
    assert [(f.code, f.step) for f in fine.findings if f.severity in SEVERE] == [("TM315", 89)]
    assert [f.code for f in pre.findings if f.severity in SEVERE] == []
    _, healthy = medic_phases("--seed", seed)  # the control: a healthy last phase stays silent at close
    healthy.close()
    assert [f.code for f in healthy.findings if f.severity in SEVERE] == []


def test_medic_as_a_context_manager_closes_also_when_the_loop_raises():
    """``with Medic(...) as medic:``: the end-of-training checks run when the block ends, an exception raised
    in the loop propagates unchanged."""
    import torch
    from torch import nn

    from trainmedic import Medic

    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # far too low: the loss does not move in 60 steps
    with pytest.raises(RuntimeError, match="the user's own error"):
        with Medic(model, opt, console=False) as medic:
            for step in range(60):
                i = (step * 32) % 256
                loss = nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32])
                opt.zero_grad()
                loss.backward()
                medic.step(loss)
            assert [f.code for f in medic.findings if f.severity in SEVERE] == []
            raise RuntimeError("the user's own error")
    assert [(f.code, f.step) for f in medic.findings if f.severity in SEVERE] == [("TM315", 59)]
    medic.close()  # closing again after the with-block: harmless
    assert [(f.code, f.step) for f in medic.findings if f.severity in SEVERE] == [("TM315", 59)]


def test_a_loss_that_raises_inside_with_medic_gets_the_rows_named():
    """``F.binary_cross_entropy`` raises on a NaN prediction, before ``medic.step`` could see the step. Leaving
    ``with Medic(...)`` through that exception, the Medic reads the input of the last training forward (TM101,
    the rows), and the exception reaches the script unchanged. The same loop on clean data raises nothing and
    ends without a finding."""
    import torch
    from torch import nn

    from trainmedic import Medic

    def train(poison, medics):
        torch.manual_seed(0)
        x = torch.rand(320, 16)
        if poison:
            x[200 + 7, 3] = float("nan")  # in the fourth batch (rows 192-255), position 15
        model = nn.Sequential(nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 16), nn.Sigmoid())
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        with Medic(model, opt, console=False, loss_fn=nn.functional.binary_cross_entropy) as medic:
            medics.append(medic)
            for i in range(0, 320, 64):
                xb = x[i:i + 64]
                loss = nn.functional.binary_cross_entropy(model(xb), xb)
                opt.zero_grad()
                loss.backward()
                medic.step(loss, batch=(xb, xb))

    poisoned: list = []
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        train(True, poisoned)
    found = [(f.code, f.step, f.evidence["rows"]) for f in poisoned[0].findings if f.severity in SEVERE]
    assert found == [("TM101", 3, [15])] and poisoned[0].step_count == 3
    clean: list = []
    train(False, clean)
    assert clean[0].step_count == 5 and [f.code for f in clean[0].findings if f.severity in SEVERE] == []

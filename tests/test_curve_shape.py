"""TM305 and TM306 told apart by the shape of the rise (issue 11): a loss thrown up in one step that moves on
by less each step is a jump (TM306: something changed at that step), a loss growing faster and faster is a
climb (TM305: the rate). Pure function on traces, and real trainings (``run_scripts/rise_shape.py``) under
``trainmedic run`` and ``Medic``, with a healthy twin."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from trainmedic import Medic
from trainmedic.instrument.runner import run_script
from trainmedic.rules.shape import is_jump

SCRIPTS = Path(__file__).resolve().parent / "run_scripts"
sys.path.insert(0, str(SCRIPTS))
from rise_shape import train  # noqa: E402


def test_a_jump_is_not_a_climb():
    assert is_jump(np.array([0.1, 12.6, 15.8, 17.8]))  # one step carries the rise, then smaller steps
    for r in (1.2, 2.0, 5.0, 30.0):  # geometric growth: every increase larger than the last
        assert not is_jump(0.1 * r ** np.arange(4))
    assert not is_jump(np.array([0.1, 5.0, 5.0, 9.0]))  # not strictly rising
    assert not is_jump(np.array([0.1, 4.0, 9.0, 9.5]))  # the second step rises more than the first


def medic_findings(kind: str) -> list:
    medics = []

    def step(net, opt):
        medics.append(Medic(net, opt, console=False))
        return medics[0].step

    train(kind, step)
    return medics[0].findings


def run_findings(kind: str, out: Path) -> list[dict]:
    return run_findings_of(SCRIPTS / "rise_shape.py", [kind], out)


def check(kind: str, found: list[tuple[str, int | None, dict]]) -> None:
    loud = [f for f in found if f[0] not in ("TM904",)]
    if kind == "healthy":
        assert loud == [], found
    elif kind == "jump":
        assert loud[0][0] == "TM306" and loud[0][2]["shape"] == "jump" and loud[0][2]["onset_step"] == 200, found
        assert loud[0][2]["cause"] == "a change at the onset step", found  # mid-run: something changed there
        assert "TM305" not in {c for c, _, _ in loud}  # and no divergence called once it comes back down
    else:
        assert loud[0][0] == "TM305" and loud[0][2]["cause"] == "learning rate", found
        assert loud[0][1] > 200


@pytest.mark.parametrize("kind", ["jump", "climb", "healthy"])
def test_medic_names_the_shape(kind):
    check(kind, [(f.code, f.step, f.evidence) for f in medic_findings(kind)])


@pytest.mark.parametrize("kind", ["jump", "climb", "healthy"])
def test_run_names_the_shape(kind, tmp_path):
    check(kind, [(f["code"], f["step"], f["evidence"]) for f in run_findings(kind, tmp_path / kind)])


def test_a_jump_at_the_first_update_names_the_rate(tmp_path):
    """A script written apart from the rules (``benchmarks/fresh2/lstm_packed.py``: a packed LSTM, Adam) at
    300x its rate: the loss jumps from 1.08 to 31.6 at step 1 and rises on by less each step. Nothing changed
    at step 1 but the first update itself: the message said "a warm restart or a change of the learning
    rate, the data, a bad batch" and now names the rate too large for the model as initialized."""
    source = Path(__file__).resolve().parents[1] / "benchmarks" / "fresh2" / "lstm_packed.py"
    script = tmp_path / "lstm_x300.py"
    script.write_text(source.read_text().replace("lr=3e-3", "lr=0.9"))
    found = run_findings_of(script, ["--epochs", "1"], tmp_path / "out")
    jump = [f for f in found if f["code"] == "TM306"]
    assert jump and jump[0]["evidence"]["onset_step"] == 1, found
    assert jump[0]["evidence"]["cause"] == "the first update" and "the first update did it" in jump[0]["message"]


def run_findings_of(script: Path, argv: list[str], out: Path) -> list[dict]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_script(str(script), argv, out=out, console=False, summary=False) == 0
    return json.loads((out / "findings.json").read_text())["findings"]

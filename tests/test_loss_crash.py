"""A loss function that raises on bad rows (``F.binary_cross_entropy`` on a NaN or a -9999 sentinel) under
``trainmedic run``: the rows are named before the script's exception propagates, and the script's traceback
and exit code are exactly python's. ``run_scripts/bce_crash.py`` is an ordinary autoencoder script."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainmedic.instrument.runner import run_script

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "bce_crash.py"


def plain(kind: str) -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(SCRIPT), kind], capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stderr


def under_run(argv: list[str], out: Path) -> tuple[int, str, list[dict]]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = run_script(str(SCRIPT), argv, out=out, console=False, summary=False)
    return rc, err.getvalue(), json.loads((out / "findings.json").read_text())["findings"]


@pytest.mark.parametrize("kind,code,says", [("nan", "TM101", "NaN/Inf in 1 of 50 rows"),
                                            ("sentinel", "TM109", "-9999")])
def test_rows_are_named_when_the_loss_raises_and_the_script_sees_python(kind, code, says, tmp_path):
    rc, err, found = under_run([kind], tmp_path / kind)
    plain_rc, plain_err = plain(kind)
    assert rc == plain_rc == 1
    assert err == plain_err  # the same traceback, frame for frame: trainmedic's wrappers are not in it
    assert "should be between 0 and 1" in err
    hit = [f for f in found if f["code"] == code]
    assert hit and says in hit[0]["message"] and "when the loss function raised" in hit[0]["message"]
    assert "TM903" not in [f["code"] for f in found]  # the named rows explain the crash: no "nothing watched"
    if kind == "nan":
        assert hit[0]["evidence"]["rows"] and hit[0]["evidence"]["batch_size"] == 50
    else:
        assert hit[0]["evidence"]["value"] == -9999.0


def test_healthy_twin_trains_silently(tmp_path):
    rc, err, found = under_run(["nan", "--healthy"], tmp_path / "healthy")
    assert rc == 0 and err == ""
    assert [f for f in found if f["severity"] in ("warning", "error")] == []


def test_a_crash_before_the_first_step_without_a_finding_is_said_as_a_stop(tmp_path):
    """The script's own error before any step: TM903 says it stopped, not that it "trained nothing"."""
    script = tmp_path / "early.py"
    script.write_text("import torch\nnet = torch.nn.Linear(3, 1)\nraise ValueError('before training')\n")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = run_script(str(script), [], out=tmp_path / "o", console=False, summary=False)
    found = json.loads((tmp_path / "o" / "findings.json").read_text())["findings"]
    assert rc == 1 and "ValueError: before training" in err.getvalue()
    assert [f["code"] for f in found] == ["TM903"]
    assert "stopped (exit code 1) before its first optimizer step" in found[0]["message"]


def test_rows_are_named_when_the_models_forward_raises(tmp_path):
    """``run_scripts/forward_raises.py``: ``Categorical(logits=NaN)`` raises inside the forward, no loss
    function ever sees the batch; the runner reads the last training forward's input before the traceback
    (benchmarks/fresh3 mdn_mixture: no finding on the code before)."""
    script = Path(__file__).resolve().parent / "run_scripts" / "forward_raises.py"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = run_script(str(script), [], out=tmp_path / "o", console=False, summary=False)
    found = json.loads((tmp_path / "o" / "findings.json").read_text())["findings"]
    assert rc == p.returncode == 1
    # the script's frames and its exception as python prints them (torch's own `_call_impl` frames differ
    # where a module has hooks, as with any hook on the model)
    def script_lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if "forward_raises.py" in line or line.startswith("ValueError")]
    assert script_lines(err.getvalue()) == script_lines(p.stderr) and script_lines(p.stderr)
    hit = [f for f in found if f["code"] == "TM101"]
    assert hit and "when the training script raised" in hit[0]["message"]
    assert hit[0]["evidence"]["rows"] == [10] and hit[0]["evidence"]["batch_size"] == 40  # row 130 of 400
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert run_script(str(script), ["--healthy"], out=tmp_path / "h", console=False, summary=False) == 0
    healthy = json.loads((tmp_path / "h" / "findings.json").read_text())["findings"]
    assert not [f for f in healthy if f["severity"] in ("warning", "error")]

"""`trainmedic run` watches every training loop and changes nothing the script sees.

Each test runs a small ordinary script (no trainmedic import, in tests/run_scripts/) under `trainmedic run`
and, where the script's own output is the point, under plain python too: same stdout, same stderr apart
from trainmedic's own lines, same exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainmedic.instrument.runner import run_script

SCRIPTS = Path(__file__).resolve().parent / "run_scripts"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("PYTHONWARNINGS", None)  # the script's own warnings must show, as they would under python


def python(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env or ENV,
                          timeout=300)


def trainmedic(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return python("-m", "trainmedic", *args, cwd=cwd, env=env)


def side_by_side(script: str, argv: list[str], out: Path, cwd: Path | None = None, env: dict | None = None
                 ) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """`python SCRIPT ARGV` and `trainmedic run --quiet --out OUT SCRIPT ARGV`, run at the same time."""
    cmds = [[sys.executable, script, *argv],
            [sys.executable, "-m", "trainmedic", "run", "--quiet", "--out", str(out), script, *argv]]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                              env=env or ENV) for c in cmds]
    done = []
    for c, p in zip(cmds, procs):
        stdout, stderr = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(c, p.returncode, stdout, stderr))
    return done[0], done[1]


def run_in_process(script: Path, argv: list[str], out: Path, heal: bool = False) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = run_script(str(script), argv, out=out, heal=heal, console=False, summary=False)
    return code, buf.getvalue()


def findings(out: Path) -> list[dict]:
    return json.loads((out / "findings.json").read_text())["findings"]


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def steps_watched(out: Path) -> int:
    return sum(e.get("steps", 0) for e in events(out) if e.get("type") == "meta")


def script_stderr(stderr: str) -> list[str]:
    """stderr without trainmedic's own lines (its findings and summary), the timestamps of torch logs cut."""
    own = re.compile(r"^(trainmedic: |  TM\d{3} |      (fix|action): )")
    return [re.sub(r"^[A-Z]\d{4} [\d:.]+ \d+ ", "", line) for line in stderr.splitlines() if not own.match(line)]


# -- torch.compile ---------------------------------------------------------------------------------
# backend "eager" / "aot_eager": dynamo traces the model (where trainmedic's hooks used to break it) and,
# with aot_eager, AOTAutograd builds the backward graph; inductor's C++ code generation adds ~10 s per run
# on this machine and nothing trainmedic can see, so it is left to benchmarks.
@pytest.mark.parametrize("how,backend", [("function", "eager"), ("method", "aot_eager")])
def test_a_compiled_model_trains_under_run_with_its_own_output(how, backend, tmp_path):
    env = {**ENV, "TORCH_LOGS": "recompiles,graph_breaks"}  # a recompile or graph break would print
    plain, run = side_by_side(str(SCRIPTS / "compiled.py"), [how, backend], tmp_path / "o", env=env)
    assert plain.returncode == 0, plain.stderr
    assert run.returncode == 0, run.stderr
    assert run.stdout == plain.stdout  # same losses, same number of graphs compiled
    assert script_stderr(run.stderr) == script_stderr(plain.stderr)
    found = findings(tmp_path / "o")
    assert steps_watched(tmp_path / "o") == 30
    assert {f["code"] for f in found} == {"TM904"}  # nothing failed (no TM901/TM902), nothing else to say
    skipped = {f["evidence"]["check"] for f in found}
    # model.compile() compiles the module's own call: no hook may sit on it, so its inputs are not kept.
    assert skipped == ({"activations", "training-inputs"} if how == "method" else {"activations"})
    assert all(f["severity"] == "info" for f in found)


# -- loops without an optimizer object -----------------------------------------------------------------
def test_a_hand_written_update_loop_is_watched_from_its_first_step(tmp_path):
    plain = python(str(SCRIPTS / "manual_lm.py"), "--epochs", "2")
    code, out = run_in_process(SCRIPTS / "manual_lm.py", ["--epochs", "2"], tmp_path)
    assert code == 0 and out == plain.stdout
    assert "steps 76" in out
    assert steps_watched(tmp_path) == 76  # every update, the first included
    assert findings(tmp_path) == []  # healthy: quiet
    epochs = [e for e in events(tmp_path) if e.get("type") == "epoch"]
    assert len(epochs) == 2 and all(e["val_loss"] is not None for e in epochs)  # its no_grad evaluation
    meta = next(e for e in events(tmp_path) if e.get("type") == "meta")
    assert meta["layers"][0] == "encoder.weight"  # the model's own parameter names


def test_a_hand_written_loop_that_never_zeroes_its_gradients(tmp_path):
    code, _ = run_in_process(SCRIPTS / "manual_lm.py", ["--epochs", "1", "--no-zero-grad"], tmp_path)
    assert code == 0
    found = findings(tmp_path)
    assert [f["code"] for f in found] == ["TM310"]
    assert found[0]["step"] <= 3


def test_a_hand_written_loop_is_judged_on_each_steps_own_loss(tmp_path):
    code, out = run_in_process(SCRIPTS / "manual_lm.py", ["--epochs", "1", "--nan-at", "20"], tmp_path)
    assert code == 0
    first = {f["code"]: f["step"] for f in findings(tmp_path)}
    assert first["TM301"] == 20


def test_heal_on_a_hand_written_loop_says_it_can_only_watch(tmp_path):
    plain = python(str(SCRIPTS / "manual_lm.py"), "--epochs", "1", "--nan-at", "20")
    code, out = run_in_process(SCRIPTS / "manual_lm.py", ["--epochs", "1", "--nan-at", "20"], tmp_path, heal=True)
    assert code == 0 and out == plain.stdout  # nothing was skipped or rolled back: the script's own numbers
    found = {f["code"]: f for f in findings(tmp_path)}
    note = found["TM904"]
    assert note["severity"] == "info" and note["evidence"]["check"] == "heal" and note["step"] == 0
    assert found["TM301"]["action"] is None
    # the forensic replay names what went wrong; nothing touched the run (no skip, clip, rollback, lr change)
    assert [e["action"] for e in events(tmp_path) if e.get("type") == "action"] == ["forensics"]


def test_gradients_without_training_are_no_loop_and_the_run_says_nothing_was_watched(tmp_path):
    code, out = run_in_process(SCRIPTS / "grads_only.py", [], tmp_path)
    assert code == 0 and out.startswith("saliency")
    found = findings(tmp_path)
    assert [(f["code"], f["severity"]) for f in found] == [("TM903", "warning")]  # no trial finding left over
    assert found[0]["evidence"]["backward_passes"] == 3 and found[0]["evidence"]["optimizer_steps"] == 0


# -- LBFGS: each step judged on its own closure's loss ---------------------------------------------------
def test_lbfgs_steps_are_all_counted_and_judged_on_their_own_loss(tmp_path):
    code, out = run_in_process(SCRIPTS / "lbfgs.py", [], tmp_path)
    assert code == 0 and "finite True" in out
    printed = [float(m) for m in re.findall(r"step \d+ loss ([\d.e-]+)", out)]
    samples = [e for e in events(tmp_path) if e.get("type") == "sample"]
    assert [e["step"] for e in samples] == list(range(8))
    assert [e["loss"] for e in samples] == pytest.approx(printed, rel=1e-5, abs=1e-6)
    assert findings(tmp_path) == []


def test_heal_skips_the_lbfgs_step_whose_closure_loss_is_nan(tmp_path):
    code, out = run_in_process(SCRIPTS / "lbfgs.py", ["--nan-at", "5"], tmp_path / "watch")
    assert code == 0 and "finite False" in out  # plain and watched runs are poisoned
    assert ("TM301", 5) in [(f["code"], f["step"]) for f in findings(tmp_path / "watch")]
    code, out = run_in_process(SCRIPTS / "lbfgs.py", ["--nan-at", "5"], tmp_path / "heal", heal=True)
    assert code == 0 and "finite True" in out
    assert ("TM301", 5, "step skipped") in [(f["code"], f["step"], f["action"]) for f in findings(tmp_path / "heal")]


# -- an optimizer over plain tensors ---------------------------------------------------------------------
def test_an_optimizer_over_plain_tensors_is_watched(tmp_path):
    code, out = run_in_process(SCRIPTS / "plain_tensors.py", [], tmp_path)
    assert code == 0 and "finite True" in out
    assert steps_watched(tmp_path) == 40
    assert findings(tmp_path) == []
    meta = next(e for e in events(tmp_path) if e.get("type") == "meta")
    assert meta["layers"] == ["w", "b"]  # named as the script names them


def test_heal_skips_a_nan_step_over_plain_tensors(tmp_path):
    code, out = run_in_process(SCRIPTS / "plain_tensors.py", ["--nan-at", "30"], tmp_path / "watch")
    assert code == 0 and "finite False" in out
    code, out = run_in_process(SCRIPTS / "plain_tensors.py", ["--nan-at", "30"], tmp_path / "heal", heal=True)
    assert code == 0 and "finite True" in out
    assert [(f["code"], f["step"], f["action"]) for f in findings(tmp_path / "heal")] == [("TM301", 30, "step skipped")]


# -- nothing watched -------------------------------------------------------------------------------------
def test_a_script_that_trains_nothing_gets_a_warning_and_a_console_line(tmp_path):
    r = trainmedic("run", "--out", str(tmp_path / "o"), str(SCRIPTS / "pkg"), cwd=tmp_path)
    assert r.returncode == 0 and "package main ran" in r.stdout
    assert "TM903 nothing-watched [warning]" in r.stderr and "nothing was watched: no optimizer step was seen" in r.stderr
    assert "no findings" not in r.stderr
    assert [(f["code"], f["severity"]) for f in findings(tmp_path / "o")] == [("TM903", "warning")]


# -- what the script sees --------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["dot", "folder"])
def test_the_script_sees_what_python_gives_it(how, tmp_path):
    """__file__, sys.argv, sys.path and the __main__ globals as plain python gives them; the script changes
    directory and still finds the file next to it through Path(__file__)."""
    cwd = SCRIPTS.parent
    script = {"dot": "./run_scripts/where/where.py", "folder": "run_scripts/where_pkg"}[how]
    plain, run = side_by_side(script, ["--flag", "x y"], tmp_path / "o", cwd=cwd)
    assert run.returncode == plain.returncode
    assert run.stdout == plain.stdout
    assert script_stderr(run.stderr) == script_stderr(plain.stderr)
    if how != "folder":
        assert plain.returncode == 0 and "config lr=0.1" in plain.stdout
        assert f"file {cwd / script.lstrip('./')}" in plain.stdout.replace("/./", "/")


def test_a_script_that_pickles_its_whole_model_keeps_working(tmp_path):
    """torch.save(model), copy.deepcopy(model), pickle.dumps(model): no hook of trainmedic's sits on the model
    (a hook holding a local function made pickling fail under run only)."""
    code, out = run_in_process(SCRIPTS / "save_whole.py", [], tmp_path)
    assert code == 0, out
    assert out.count("reloaded same=True, hooks=0") == 3
    assert steps_watched(tmp_path) == 30


@pytest.mark.parametrize("name,content", [("data.csv", "a,b\n1,2\n"), ("notes.ipynb", "{}"), ("folder", None)])
def test_a_path_that_is_not_a_python_script_is_one_line_and_creates_nothing(name, content, tmp_path, monkeypatch,
                                                                            capsys):
    from trainmedic.cli import main

    target = tmp_path / name
    if content is None:
        target.mkdir()
    else:
        target.write_text(content)
    monkeypatch.chdir(tmp_path)
    assert main(["run", name]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainmedic: error: not a Python script: {name}")
    assert out == "" and not (tmp_path / "runs").exists()

"""`trainmedic run`: unmodified scripts, the same findings as the Medic API, the script's exit code kept."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainmedic.driver import Driver
from trainmedic.instrument import session as session_mod
from trainmedic.instrument.runner import run_script
from trainmedic.zoo import CASES

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "examples" / "zoo_plain"
SCRIPTS = Path(__file__).resolve().parent / "run_scripts"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}



def run_only(code: str) -> bool:
    """Codes only `run` can raise on the zoo: it samples activations (TM311), and it captures each step's
    batch, so pre-flight (TM2xx) and forensics (TM210 op, TM313 rows) run; most zoo loops pass no batch."""
    return code in ("TM311", "TM313") or code.startswith("TM2")


def run_quiet(script: Path | str, argv: list[str], out: Path, heal: bool = False) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = run_script(str(script), argv, out=out, heal=heal, console=False, summary=False)
    return code, buf.getvalue()


def findings(out: Path) -> list[dict]:
    return json.loads((out / "findings.json").read_text())["findings"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainmedic", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=120)


def test_every_zoo_case_has_a_plain_twin():
    assert sorted(p.stem for p in PLAIN.glob("*.py") if not p.stem.startswith("_")) == \
        sorted(c.module for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.module for c in CASES])
def test_plain_zoo_script_under_run_gives_the_medic_api_codes(case, tmp_path):
    api = case.load().train(mode="watch")
    api_codes = {f.code for f in api.medic.findings}
    code, _ = run_quiet(PLAIN / f"{case.module}.py", [], tmp_path)
    assert code == 0
    found = findings(tmp_path)
    run_codes = {f["code"] for f in found}
    if case.control:
        assert [f["code"] for f in found if f["severity"] in ("warning", "error")] == []
    else:
        assert run_codes & case.expect, f"expected one of {sorted(case.expect)}, got {sorted(run_codes)}"
    assert all(run_only(c) for c in run_codes - api_codes), run_codes - api_codes
    # Forensics replays the loss function; `run` knows it only when it is an nn/F loss, not a hand-written
    # one (nan_log's `pred - y*log(pred)`), so the op-naming TM210 may be the API's alone.
    missing = api_codes - run_codes - {"TM210"}
    if missing:
        # A loop over a plain generator shows `run` no epoch boundary (no DataLoader restart, no evaluation,
        # no scheduler.step(val), no trainmedic.log): the per-epoch check of the training loss cannot run.
        epochs = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert missing == {"TM308"} and sum(e.get("type") == "epoch" for e in epochs) <= 1
    # Same script, same numbers: each problem is first seen at the same step as with the Medic API.
    first_api = {f.code: f.step for f in api.medic.findings}
    first_run = {f["code"]: f["step"] for f in found}
    common = first_api.keys() & first_run.keys()
    assert {c: first_run[c] for c in common} == {c: first_api[c] for c in common}


@pytest.mark.parametrize("module", ["grad_spike", "forgot_zero_grad"])
def test_heal_under_run_takes_the_medic_api_actions(module, tmp_path):
    case = next(c for c in CASES if c.module == module)
    api = case.load().train(mode="heal")
    api_actions = [(e["action"], e["step"]) for e in api.medic.events if e.get("type") == "action"]
    code, _ = run_quiet(PLAIN / f"{module}.py", [], tmp_path, heal=True)
    assert code == 0
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    run_actions = [(e["action"], e["step"]) for e in events if e.get("type") == "action"]
    assert [a for a in run_actions if a[0] != "preflight"] == [a for a in api_actions if a[0] != "preflight"]
    assert api_actions


def test_heal_under_run_probes_the_rate_and_the_script_continues_at_it(tmp_path):
    """`trainmedic run --heal` on an unmodified script whose SGD rate is 30x too high: rollback to the
    initial weights, a probe of the rates below, the run continued from the probe's ramp where it reached the
    chosen rate (plain SGD), and the script's own optimizer ends at the rate the probe chose (what the
    script prints)."""
    code, out = run_quiet(SCRIPTS / "heal_probe.py", [], tmp_path, heal=True)
    assert code == 0
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    acts = [e for e in events if e.get("type") == "action"]
    rollback = next(e for e in acts if e["action"] == "rollback")
    probe = next(e for e in acts if e["action"] == "probe")
    assert rollback["to_step"] == 0 and rollback["step"] < 20 and rollback["lr_before"] == 3.0
    assert probe["to_step"] == 0 and probe["lr_before"] == 3.0 and probe["rule"] and probe["why"]
    assert 8 <= probe["probe_steps"] <= 36 and probe["warmup_steps"] == 0
    assert rollback["step"] < probe["rewound_to"] < probe["step"]
    lines = [line.split() for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 4
    assert float(lines[-1][3]) == pytest.approx(probe["lr_after"])  # the script's optimizer, at the probed rate
    assert float(lines[-1][5]) < 0.4  # learned (the plain script's validation loss is inf or nan)
    code, plain_out = run_quiet(SCRIPTS / "heal_probe.py", [], tmp_path / "watch")
    assert not float(plain_out.splitlines()[-1].split()[5]) < 1.0


def test_heal_skips_a_nan_step_of_a_custom_optimizer(tmp_path):
    code, out = run_quiet(SCRIPTS / "custom_opt.py", [], tmp_path, heal=True)
    assert code == 0 and "finite=True" in out
    found = findings(tmp_path)
    assert [f["code"] for f in found] == ["TM101", "TM301"]  # the input row that caused it, then the NaN loss
    assert found[0]["evidence"]["rows"] == [0] and found[0]["step"] == 30
    code, out = run_quiet(SCRIPTS / "custom_opt.py", ["--expect-nan"], tmp_path / "watch")
    assert code == 0 and "finite=False" in out  # watch mode changes nothing


def test_amp_scaler_skips_are_seen(tmp_path):
    code, out = run_quiet(SCRIPTS / "amp_collapse.py", [], tmp_path)
    assert code == 0 and "scale" in out
    assert "TM314" in {f["code"] for f in findings(tmp_path)}


def test_validation_from_plateau_scheduler_and_log(tmp_path):
    for argv in ([], ["--log"]):
        code, out = run_quiet(SCRIPTS / "features.py", ["--epochs", "3", "--workers", "0", *argv], tmp_path)
        assert code == 0 and out.count("argv-ok name=__main__") == 3
        epochs = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()
                  if '"epoch"' in line and json.loads(line).get("type") == "epoch"]
        assert len(epochs) == 3 and all(e["val_loss"] is not None for e in epochs)


def test_internal_error_is_recorded_and_the_script_goes_on(tmp_path, monkeypatch):
    def broken(self, loss, batch=None, observed=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(Driver, "before_step", broken)
    code, out = run_quiet(PLAIN / "healthy_accumulation.py", ["--epochs", "1"], tmp_path)
    assert code == 0 and "epoch 0" in out
    found = findings(tmp_path)
    assert [f["code"] for f in found] == ["TM902", "TM903"]  # and so nothing was watched: said plainly
    assert "boom" in found[0]["message"]
    assert session_mod.active_session() is None


def test_hooks_are_removed_after_the_run(tmp_path):
    backward, mse = torch.Tensor.backward, torch.nn.functional.mse_loss
    iter_ = torch.utils.data.DataLoader.__iter__
    run_quiet(SCRIPTS / "exits.py", ["0"], tmp_path)
    assert torch.Tensor.backward is backward and torch.nn.functional.mse_loss is mse
    assert torch.utils.data.DataLoader.__iter__ is iter_
    import torch.optim.optimizer as opt_mod

    assert not opt_mod._global_optimizer_pre_hooks and not opt_mod._global_optimizer_post_hooks


# -- the command line (subprocesses) ------------------------------------------------------------------
def test_cli_script_with_args_workers_and_relative_import(tmp_path):
    r = cli("run", "--out", str(tmp_path / "o"), str(SCRIPTS / "features.py"), "--epochs", "2", "--workers", "2",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("argv-ok name=__main__") == 2
    assert "trainmedic: report" in r.stderr
    assert {p.name for p in (tmp_path / "o").iterdir()} >= {"findings.json", "events.jsonl", "report.html"}


def test_cli_script_error_keeps_its_traceback_and_exit_code(tmp_path):
    r = cli("run", "--out", str(tmp_path / "o"), str(SCRIPTS / "raises.py"), cwd=tmp_path)
    assert r.returncode == 1
    assert "step 4" in r.stdout
    assert "ValueError: the script's own error" in r.stderr
    tb = r.stderr.split("Traceback (most recent call last):")[1].split("ValueError")[0]
    assert "raises.py" in tb and "runpy" not in tb and "trainmedic" not in tb
    assert (tmp_path / "o" / "findings.json").is_file()  # the report is still written


def test_cli_exit_code_passes_through_and_default_out(tmp_path):
    r = cli("run", str(SCRIPTS / "exits.py"), "7", cwd=tmp_path)
    assert r.returncode == 7
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("exits-")
    assert (runs[0] / "findings.json").is_file()


def test_cli_missing_script_is_one_line(tmp_path):
    r = cli("run", "no_such_train.py", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["trainmedic: error: no such script: no_such_train.py"]
    assert not (tmp_path / "runs").exists()


def test_cli_runs_a_package_folder(tmp_path):
    r = cli("run", "--quiet", "--out", str(tmp_path / "o"), str(SCRIPTS / "pkg"), cwd=tmp_path)
    assert r.returncode == 0 and "package main ran" in r.stdout
    assert "no optimizer step was seen" in r.stderr


def test_one_engine_per_optimizer(tmp_path, drivers_at_finish):
    code, out = run_quiet(SCRIPTS / "two_optimizers.py", [], tmp_path, heal=True)
    assert code == 0 and "done" in out
    assert drivers_at_finish == [("Sequential", 40), ("Sequential", 40)]
    found = findings(tmp_path)
    assert "TM310" not in [f["code"] for f in found]  # the G step's backward reaching D is not staleness
    assert ("TM301", 20, "step skipped") in [(f["code"], f["step"], f["action"]) for f in found]
    assert [f["evidence"].get("optimizer") for f in found if f["code"] == "TM301"] == [0]


def test_checkpoint_dir_writes_checkpoints_holding_the_stepped_weights(tmp_path):
    """`trainmedic run --checkpoint-dir`: the checkpoint of step N holds the weights after the script's
    N-th optimizer step (the callback runs once the script's step is done, not in the pre-step hook)."""
    import torch

    from trainmedic.heal.checkpoint import latest_checkpoint, load_checkpoint

    final = tmp_path / "final.pt"
    ckpt = tmp_path / "ckpt"
    proc = cli("run", "--quiet", "--out", str(tmp_path / "out"), "--checkpoint-dir", str(ckpt),
               "--checkpoint-every", "10", str(SCRIPTS / "save_final.py"), str(final))
    assert proc.returncode == 0, proc.stderr
    payload = load_checkpoint(latest_checkpoint(ckpt))
    assert payload["step"] == 30
    weights = torch.load(final, weights_only=True)
    for k, v in weights.items():
        assert torch.equal(payload["model"][k], v), k


def test_checkpoint_every_must_be_positive(tmp_path):
    proc = cli("run", "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "0", str(SCRIPTS / "save_final.py"))
    assert proc.returncode == 2 and "positive" in proc.stderr and "Traceback" not in proc.stderr

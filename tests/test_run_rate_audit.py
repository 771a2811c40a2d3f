"""The rate audit (TM343) under `trainmedic run --heal`: the script's loss rebuilt from what the session saw.

Real tiny trainings of an unmodified script (`run_scripts/adam_classifier.py`: the 4-class MLP of
`test_rate_audit.py`, Adam, dropout 0.2, 32 steps an epoch, validation after each) through `run_script`, the
function the CLI calls:

* at 30x its good rate, with `F.cross_entropy` or `nn.CrossEntropyLoss()`: the loss is rebuilt from the first
  steps, the audit names TM343 at the first evaluation (step 32), and heal restarts the script's model and
  optimizer from their initial state at the next step with a probe below the audited rate and a warmup
  (heal/rate_answer.py); the script's own optimizer ends at the probed rate and its validation ends well
  below the plain script's;
* at the good rate: audited, nothing found, and the script prints what the plain script prints (every
  validation loss, the final weights' digest, the RNG's digest);
* a hand-written loss, label smoothing, a class weight: the rebuild is refused (a replay of another loss
  would judge the rate on the wrong objective) and the run is not audited; nor is a script that clips its
  gradients (the replays would not);
* a script that steps a scheduler (a StepLR) at the good rate: the loss is rebuilt, the audit runs where the
  schedule holds over its replays (heal/audit_schedule.py), finds nothing, and the script prints what the
  plain script prints.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from trainmedic.heal.rate_audit import RateAudit
from trainmedic.instrument.runner import run_script
from trainmedic.instrument.session import Session

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "adam_classifier.py"


@pytest.fixture
def at_finish(monkeypatch):
    """The session's loss rebuild and the first driver's rate audit, read when the run finishes."""
    seen: dict = {}
    original = Session.finish

    def keep(self, *args, **kwargs):
        seen["rebuild"] = self.rebuild
        seen["audit"] = next((cb for d in self.drivers for cb in d.callbacks if isinstance(cb, RateAudit)), None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Session, "finish", keep)
    return seen


def run(argv: list[str], out: Path, heal: bool) -> tuple[list[str], list[dict]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = run_script(str(SCRIPT), argv, out=out, heal=heal, console=False, summary=False)
    assert code == 0
    return buf.getvalue().splitlines(), json.loads((out / "findings.json").read_text())["findings"]


def vals(lines: list[str]) -> list[float]:
    return [float(line.split()[3]) for line in lines if line.startswith("epoch")]


@pytest.mark.parametrize("loss", ["functional", "module"])
def test_adam_30x_too_high_under_run_heal_is_audited_and_restarted(loss, tmp_path, at_finish):
    argv = ["--lr", "3e-2", "--loss", loss, "--epochs", "6"]
    plain, _ = run(argv, tmp_path / "watch", heal=False)
    healed, found = run(argv, tmp_path / "heal", heal=True)
    rebuild = at_finish["rebuild"]
    assert rebuild.refused is None and rebuild.loss_fn is not None and rebuild.loss_fn.name == "cross_entropy"
    if loss == "module":  # the module's arguments are carried as it passed them
        assert dict(rebuild.loss_fn.kwargs) == {"weight": None, "ignore_index": -100, "reduction": "mean",
                                                "label_smoothing": 0.0}
    tm343 = [f for f in found if f["code"] == "TM343"]
    assert len(tm343) == 1 and tm343[0]["step"] == 32 and tm343[0]["evidence"]["epoch"] == 0
    assert tm343[0]["evidence"]["loss_fn"].startswith("F.cross_entropy(output, target")
    assert min(tm343[0]["evidence"]["ratios"].values()) < 1 - 0.045
    assert tm343[0]["action"].startswith("restart from step 0")
    events = [json.loads(line) for line in (tmp_path / "heal" / "events.jsonl").read_text().splitlines()]
    acts = [e for e in events if e.get("type") == "action"]
    assert [(a["action"], a["reason"]) for a in acts] == [("rollback", "TM343"), ("probe", "TM343")]
    assert acts[0]["step"] == 32 and acts[0]["to_step"] == 0 and acts[0]["ceiling"] == pytest.approx(3e-2)
    assert acts[1]["probed"][1] <= 3e-2 * (1 + 1e-9) and acts[1]["lr_after"] < 3e-2 / 2.9
    assert vals(healed)[0] == vals(plain)[0]  # nothing changed before the first evaluation
    lrs = [float(line.split()[5]) for line in healed if line.startswith("epoch")]
    assert lrs[0] == 3e-2 and lrs[-1] == pytest.approx(acts[1]["lr_after"])  # the script's optimizer, restarted
    assert vals(healed)[-1] < 0.8 * vals(plain)[-1], (vals(healed), vals(plain))
    assert not [f for f in found if f["code"] != "TM343" and f["severity"] in ("warning", "error")]


def test_a_good_rate_under_run_heal_is_audited_and_prints_what_the_plain_script_prints(tmp_path, at_finish):
    plain, _ = run(["--lr", "1e-3"], tmp_path / "watch", heal=False)
    healed, found = run(["--lr", "1e-3"], tmp_path / "heal", heal=True)
    audit = at_finish["audit"]
    assert at_finish["rebuild"].loss_fn is not None
    assert audit is not None and audit.active and audit.runs == 1 and audit.loss_fn is not None  # it ran
    assert not [f for f in found if f["severity"] in ("warning", "error")]
    assert healed == plain  # validation losses, weights' digest, RNG digest: identical
    assert len(vals(plain)) == 4


def test_a_scheduled_script_at_a_good_rate_is_audited_and_prints_what_the_plain_script_prints(tmp_path,
                                                                                              at_finish):
    argv = ["--lr", "1e-3", "--schedule"]
    plain, _ = run(argv, tmp_path / "watch", heal=False)
    healed, found = run(argv, tmp_path / "heal", heal=True)
    audit = at_finish["audit"]
    assert at_finish["rebuild"].refused is None and at_finish["rebuild"].loss_fn is not None
    assert audit is not None and audit.runs == 1  # at the first evaluation: StepLR held the rate over its replays
    assert not [f for f in found if f["severity"] in ("warning", "error") or f["code"] == "TM904"]
    assert healed == plain


def test_a_scheduler_stepped_once_an_epoch_is_known_at_the_first_evaluation(tmp_path, at_finish):
    """A StepLR stepped after each validation has not stepped in the loop by the first evaluation, but its
    constructor's initial step went through the wrapped ``LRScheduler.step``: at 30x the audit's restart
    scales the schedule (it does not probe absolute rates the scheduler would overwrite), and the schedule
    keeps its place: the script's rate halves every two epochs from the scaled rate."""
    argv = ["--lr", "3e-2", "--schedule-epoch", "--epochs", "6"]
    plain, _ = run(argv, tmp_path / "watch", heal=False)
    healed, found = run(argv, tmp_path / "heal", heal=True)
    tm343 = [f for f in found if f["code"] == "TM343"]
    assert len(tm343) == 1 and tm343[0]["step"] == 32 and tm343[0]["evidence"]["scheduler"] == "StepLR"
    lrs = [float(line.split()[5]) for line in healed if line.startswith("epoch")]
    factor = lrs[1] / 3e-2
    assert factor == pytest.approx(1 / 3) or factor == pytest.approx(1 / 10)
    assert tm343[0]["action"] == f"restart from step 0, schedule x{factor:.3g}"
    assert lrs[1:] == pytest.approx([3e-2 * factor * 0.5 ** (e // 2) for e in range(1, 6)])
    assert vals(healed)[0] == vals(plain)[0] and vals(healed)[-1] < vals(plain)[-1]
    assert not [f for f in found if f["code"] == "TM904"]
    ok_plain, _ = run(["--lr", "1e-3", "--schedule-epoch"], tmp_path / "ok_watch", heal=False)
    ok_healed, ok_found = run(["--lr", "1e-3", "--schedule-epoch"], tmp_path / "ok_heal", heal=True)
    assert at_finish["audit"].runs == 1 and ok_healed == ok_plain  # audited, nothing found, nothing changed
    assert not [f for f in ok_found if f["severity"] in ("warning", "error")]


@pytest.mark.parametrize("argv,why", [
    (["--loss", "hand"], "0 functional loss calls"),
    (["--loss", "smoothed"], "the graph does not show"),
    (["--loss", "weighted"], "tensor argument"),
    (["--loss", "log_softmax_nll"], "is not the model's output tensor"),
    (["--clip"], "clips its gradients"),
], ids=["hand", "label-smoothing", "class-weight", "log-softmax-then-nll", "clipping"])
def test_a_loss_or_step_the_replays_cannot_reproduce_is_not_audited(argv, why, tmp_path, at_finish):
    lines, found = run(["--lr", "3e-2", "--epochs", "2", *argv], tmp_path, heal=True)
    rebuild = at_finish["rebuild"]
    assert rebuild.loss_fn is None and why in rebuild.refused
    assert len(rebuild.votes) == 3 and not rebuild.pending  # decided after three steps, hook removed
    audit = at_finish["audit"]
    assert audit is not None and audit.active and audit.loss_fn is None and audit.runs == 0
    assert not audit.batches  # no batch kept for an audit that cannot run
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sum(e.get("type") == "epoch" for e in events) == 2  # evaluations were seen: not unaudited for want of one
    assert not [f for f in found if f["code"] == "TM343"]


def test_nll_loss_on_a_model_that_returns_log_probabilities_is_rebuilt(tmp_path, at_finish):
    # the graph reads log_softmax + nll_loss as cross_entropy; the call was F.nll_loss on the model's own output
    run(["--lr", "3e-2", "--loss", "nll", "--epochs", "1"], tmp_path, heal=True)
    rebuild = at_finish["rebuild"]
    assert rebuild.refused is None and rebuild.loss_fn is not None and rebuild.loss_fn.name == "nll_loss"


def test_in_watch_mode_run_reports_a_rate_30x_too_high_and_prints_what_the_plain_script_prints(tmp_path, at_finish):
    """Watch mode audits too (heal/rate_audit.py::audits_in): TM343 with no action, and the script's output
    (every validation loss, the final weights' and the RNG's digests) is python's own, at 30x and at 1e-3."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    for lr, fires in (("3e-2", True), ("1e-3", False)):
        python = subprocess.run([sys.executable, str(SCRIPT), "--lr", lr], capture_output=True, text=True,
                                env=env, timeout=300).stdout.splitlines()
        watched, found = run(["--lr", lr], tmp_path / lr, heal=False)
        assert watched == python
        assert at_finish["audit"] is not None and at_finish["audit"].runs == 1
        tm343 = [f for f in found if f["code"] == "TM343"]
        assert bool(tm343) == fires
        if fires:
            assert tm343[0]["step"] == 32 and not tm343[0].get("action")
        else:
            assert not [f for f in found if f["severity"] in ("warning", "error")]

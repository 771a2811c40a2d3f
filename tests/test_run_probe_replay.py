"""The probe replay (plain SGD) under `trainmedic run --heal`: the script's loss rebuilt from its first steps.

Real tiny trainings of an unmodified script (`run_scripts/sgd_regression.py`: the regression of
`test_probe_replay.py` and `benchmarks/heal.py`, plain SGD, MSE, 64 steps an epoch) through `run_script`, the
function the CLI calls:

* at 10x its tuned rate (seed 2, the benchmark's worst case) the loss is rebuilt from steps 1-3, heal rolls
  back and probes, the replay of the probe's batches picks a rate its curve supports, and the script ends
  closer to the tuned run than heal without the replay (``probe_replay=False``), with the same RNG state;
* at the tuned rate: nothing is replayed, and the script prints what the plain script prints;
* a hand-written loss (no functional call to rebuild) or a script that clips its gradients: no loss is bound,
  nothing is replayed, and the run is the one ``probe_replay=False`` gives, line for line.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from trainmedic.heal.probe_replay import ProbeReplay
from trainmedic.instrument.hooked import HookedRun
from trainmedic.instrument.runner import run_script
from trainmedic.instrument.session import Session

SCRIPT = Path(__file__).resolve().parent / "run_scripts" / "sgd_regression.py"
TUNED = 0.1


@pytest.fixture
def at_finish(monkeypatch):
    """The session's loss rebuild and the first driver's probe replay, read when the run finishes."""
    seen: dict = {}
    original = Session.finish

    def keep(self, *args, **kwargs):
        seen["rebuild"] = self.rebuild
        seen["replay"] = next((cb for d in self.drivers for cb in d.callbacks if isinstance(cb, ProbeReplay)), None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Session, "finish", keep)
    return seen


@pytest.fixture
def no_replay(monkeypatch):
    """Call it to run the next sessions with ``probe_replay=False`` (`run` takes no thresholds)."""
    original = HookedRun.__init__

    def switch_off() -> None:
        def init(self, mode="watch", thresholds=None, *args, **kwargs):
            assert thresholds is None
            original(self, mode, {"probe_replay": False}, *args, **kwargs)

        monkeypatch.setattr(HookedRun, "__init__", init)

    return switch_off


def run(argv: list[str], out: Path, heal: bool = True) -> tuple[list[str], list[dict]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        code = run_script(str(SCRIPT), argv, out=out, heal=heal, console=False, summary=False)
    assert code == 0
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return buf.getvalue().splitlines(), [e for e in events if e.get("type") == "action"]


def last_val(lines: list[str]) -> float:
    return [float(line.split()[3]) for line in lines if line.startswith("epoch")][-1]


def test_sgd_10x_too_high_under_run_heal_is_replayed_and_ends_closer_to_the_tuned_run(tmp_path, at_finish,
                                                                                    no_replay):
    tuned, _ = run(["--lr", str(TUNED)], tmp_path / "tuned", heal=False)
    healed, acts = run(["--lr", str(10 * TUNED)], tmp_path / "replay")
    rebuild, replay_cb = at_finish["rebuild"], at_finish["replay"]
    assert rebuild.loss_fn is not None and rebuild.loss_fn.name == "mse_loss"
    assert replay_cb is not None and replay_cb.loss_fn is rebuild.loss_fn and replay_cb.runs == 1
    no_replay()
    without, acts_without = run(["--lr", str(10 * TUNED)], tmp_path / "without")
    assert at_finish["replay"] is None  # configured off: not even attached

    assert [a["action"] for a in acts] == [a["action"] for a in acts_without] == ["rollback", "probe"]
    probe, probe_without = acts[1], acts_without[1]
    assert "replay" not in probe_without
    replay = probe["replay"]
    assert replay["probe_lr"] == probe_without["lr_after"]  # the same probe, read the same way
    assert probe["lr_after"] == replay["picked"] and replay["picked"] in replay["rates"]
    assert max(replay["rates"]) <= 10 * TUNED / 3  # never above what the probe's curve supports
    assert float(healed[-3].split()[5]) == pytest.approx(replay["picked"])  # the script's optimizer, at the pick
    ratio, ratio_without = last_val(healed) / last_val(tuned), last_val(without) / last_val(tuned)
    assert abs(ratio - 1) < abs(ratio_without - 1) and ratio < 1.1 < ratio_without, (ratio, ratio_without)
    assert healed[-1] == without[-1] == tuned[-1]  # the RNG's digest: the replays' copies forked it


def test_a_tuned_sgd_run_under_run_heal_prints_what_the_plain_script_prints(tmp_path, at_finish):
    plain, _ = run(["--lr", str(TUNED), "--epochs", "3"], tmp_path / "plain", heal=False)
    healed, acts = run(["--lr", str(TUNED), "--epochs", "3"], tmp_path / "heal")
    replay_cb = at_finish["replay"]
    assert replay_cb is not None and replay_cb.active and replay_cb.loss_fn is not None and replay_cb.runs == 0
    assert not [a for a in acts if a["action"] in ("rollback", "probe")]
    assert healed == plain  # validation losses, weights' digest, RNG digest: identical


@pytest.mark.parametrize("argv,why", [(["--lr", "1.0", "--loss", "hand"], "0 functional loss calls"),
                                      (["--lr", "3.0", "--clip"], "clips its gradients")], ids=["hand", "clipping"])
def test_a_loss_or_step_the_replay_cannot_reproduce_changes_nothing(argv, why, tmp_path, at_finish, no_replay):
    argv = ["--epochs", "3", *argv]  # clipped at 1.0, 10x does not diverge: 30x stalls (TM317) and is probed
    healed, acts = run(argv, tmp_path / "heal")
    rebuild, replay_cb = at_finish["rebuild"], at_finish["replay"]
    assert rebuild.loss_fn is None and why in rebuild.refused
    assert replay_cb is not None and replay_cb.loss_fn is None and replay_cb.runs == 0 and not replay_cb.batches
    no_replay()
    without, acts_without = run(argv, tmp_path / "without")
    assert [a["action"] for a in acts] == ["rollback", "probe"] and "replay" not in acts[1]
    assert healed == without and [{k: v for k, v in a.items() if k != "time"} for a in acts] == [
        {k: v for k, v in a.items() if k != "time"} for a in acts_without]

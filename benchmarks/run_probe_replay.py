"""The probe replay (plain SGD) under `trainmedic run --heal`: final validation loss over the tuned run's.

For each seed and start (a multiple of the tuned rate 0.1), ``tests/run_scripts/sgd_regression.py`` (the
regression of ``benchmarks/heal_tasks.py``, 64 steps an epoch, 10 epochs) runs plainly at the tuned rate,
then under ``run_script(..., heal=True)`` with the replay and with ``probe_replay=False``; one JSON line each:
the ratios, the probe's own rate and the replay's pick.

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/run_probe_replay.py --seeds 0 1 2 3

Each heal run is a fresh subprocess (``--one``): ``probe_replay`` is switched off by wrapping the session's
thresholds, which ``run`` does not take from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "tests" / "run_scripts" / "sgd_regression.py"
TUNED = 0.1


def last_val(stdout: str) -> float:
    return [float(line.split()[3]) for line in stdout.splitlines() if line.startswith("epoch")][-1]


def one(lr: float, seed: int, replay: bool, heal: bool) -> dict:
    import torch

    from trainmedic.instrument.hooked import HookedRun
    from trainmedic.instrument.runner import run_script

    torch.set_num_threads(1)
    if not replay:
        original = HookedRun.__init__

        def init(self, mode="watch", thresholds=None, *args, **kwargs):
            original(self, mode, {"probe_replay": False}, *args, **kwargs)

        HookedRun.__init__ = init
    with tempfile.TemporaryDirectory() as tmp:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            rc = run_script(str(SCRIPT), ["--lr", str(lr), "--seed", str(seed)], out=Path(tmp), heal=heal,
                            console=False, summary=False)
        events = [json.loads(line) for line in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    probes = [e for e in events if e.get("type") == "action" and e.get("action") == "probe"]
    return {"rc": rc, "val": last_val(buf.getvalue()),
            "probes": [{"step": p["step"], "rule": p["rule"], "lr_after": p["lr_after"],
                        **({"probe_lr": p["replay"]["probe_lr"]} if "replay" in p else {})} for p in probes]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3])
    ap.add_argument("--starts", type=float, nargs="*", default=[10.0, 30.0])
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        lr, seed, replay, heal = args.one
        print(json.dumps(one(float(lr), int(seed), replay == "1", heal == "1")))
        return

    def sub(lr: float, seed: int, replay: bool, heal: bool) -> dict:
        out = subprocess.run([sys.executable, __file__, "--one", str(lr), str(seed), str(int(replay)), str(int(heal))],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    for seed in args.seeds:
        tuned = sub(TUNED, seed, True, False)["val"]
        for start in args.starts:
            with_, without = sub(start * TUNED, seed, True, True), sub(start * TUNED, seed, False, True)
            print(json.dumps({"seed": seed, "start": start, "tuned": tuned,
                              "replay": round(with_["val"] / tuned, 4), "no_replay": round(without["val"] / tuned, 4),
                              "probes": with_["probes"], "probes_no_replay": without["probes"]}), flush=True)


if __name__ == "__main__":
    main()

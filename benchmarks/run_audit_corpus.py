"""The rate audit (TM343) under `trainmedic run --heal` on the corpus's healthy programs: is any one cut?

For each healthy (unmutated) non-Lightning program of ``benchmarks/corpus`` and each seed, run it plainly
(``python prog.py --seed S``) and under ``run_script(..., heal=True)``; report whether the session rebuilt
the loss (or why not), TM343 findings, warnings, the rate cuts, and the program's FINAL metric both ways.
A healthy program must get no TM343 and, where nothing acted, the same metric.

    nice -n 10 .venv/bin/python benchmarks/run_audit_corpus.py --seeds 0 1
    .venv/bin/python benchmarks/run_audit_corpus.py --programs multiclass_mlp --seeds 0

Each run is a fresh subprocess (``--one PROG SEED``), one at a time, one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(CORPUS))


def final_metric(stdout: str) -> float | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("FINAL "):
            return float(json.loads(line[6:])["value"])
    return None


def one(name: str, seed: int) -> dict:
    """In a fresh process: the program under run --heal, what the rebuild decided, the findings."""
    import torch

    from trainmedic.heal.rate_audit import RateAudit
    from trainmedic.instrument.runner import run_script
    from trainmedic.instrument.session import Session

    torch.set_num_threads(1)
    seen: dict = {}
    original = Session.finish

    def keep(self, *args, **kwargs):
        seen["bound"] = str(self.rebuild.loss_fn) if self.rebuild.loss_fn is not None else None
        seen["refused"] = self.rebuild.refused
        audits = [(d, cb) for d in self.drivers for cb in d.callbacks if isinstance(cb, RateAudit) and cb.active]
        seen["audited"] = [type(d.optimizer).__name__ for d, _ in audits]  # active: adaptive, heal, rate_audit on
        seen["audit_runs"] = sum(cb.runs for _, cb in audits)  # audits done, whatever they found
        return original(self, *args, **kwargs)

    Session.finish = keep
    script = CORPUS / f"{name}.py"
    os.chdir(CORPUS)
    with tempfile.TemporaryDirectory() as tmp:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            rc = run_script(str(script), ["--seed", str(seed)], out=Path(tmp), heal=True, console=False,
                            summary=False)
        found = json.loads((Path(tmp) / "findings.json").read_text())["findings"]
        events = [json.loads(line) for line in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    return {"program": name, "seed": seed, "rc": rc, "heal_metric": final_metric(buf.getvalue()), **seen,
            "tm343": [{"step": f["step"], "ratios": f["evidence"].get("ratios")} for f in found if f["code"] == "TM343"],
            "warnings": sorted({f["code"] for f in found if f["severity"] in ("warning", "error")}),
            "actions": [(e["action"], e.get("reason"), e["step"]) for e in events if e.get("type") == "action"]}


def main() -> None:
    from programs import PROGRAMS

    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", nargs="*", default=[p.name for p in PROGRAMS if not p.lightning])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--one", nargs=2, metavar=("PROG", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    rows = []
    for name in args.programs:
        for seed in args.seeds:
            plain = subprocess.run([sys.executable, str(CORPUS / f"{name}.py"), "--seed", str(seed)], cwd=CORPUS,
                                   capture_output=True, text=True, env=env)
            heal = subprocess.run([sys.executable, __file__, "--one", name, str(seed)], capture_output=True,
                                  text=True, env=env)
            try:
                row = json.loads(heal.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                row = {"program": name, "seed": seed, "error": heal.stderr[-400:]}
            row["plain_metric"] = final_metric(plain.stdout)
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

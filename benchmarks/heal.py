"""Does heal land a run started at a bad learning rate where a careful person would have steered it?

For each task (``benchmarks/heal_tasks.py``: an MLP regression with SGD, an MLP classifier with Adam, a
small CNN with SGD + momentum, a character-level GRU with AdamW) this benchmark

1. runs a plain half-decade grid of constant learning rates; the *tuned* rate is the one with the lowest
   mean final validation loss over the seeds (computed here, in the same run);
2. starts runs at 10x, 30x and 100x the tuned rate, and runs the tuned rate with a x30 jump at 40 % of
   training (an epoch boundary), each three ways, on the same data, initialization and batch order:
   ``plain`` (the ordinary loop), ``heal`` (today's ``trainmedic.Medic(model, opt, mode="heal")`` driving
   the loop, ``end_epoch(val_loss=...)`` each epoch, honouring ``should_stop``) and ``proto`` (the
   PROTOTYPE heal loop of ``benchmarks/heal_prototype.py``: the evidence-driven policy the engine does not
   have yet - learning-rate probe, not-learning check, noise-aware overfitting stop);
3. runs the tuned rate under ``heal`` and ``proto`` too: a healthy run must end exactly where the plain
   loop ends, or within noise where heal legitimately acted.

The figure of merit is the final validation loss (of the weights the run ends with, after any restore)
over the tuned run's, same seed. Goal (issue 12): within 1.1x in >= 90 % of the bad-rate cases.

    nice -n 10 .venv/bin/python benchmarks/heal.py                 # 4 tasks x seeds 0 1 (~15 min, 1 thread)
    nice -n 10 .venv/bin/python benchmarks/heal.py --quick         # seed 0, grid reused from a previous run
    .venv/bin/python benchmarks/heal.py --seeds 2 3 --tasks digits-cnn-sgdm --drivers plain heal
    .venv/bin/python benchmarks/heal.py --explain heal          # step by step, every case heal missed
    .venv/bin/python benchmarks/heal.py --markdown heal         # the table of a results JSON, as markdown

Writes ``benchmarks/results/heal.json`` (every run: per-epoch validation, findings, actions).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from heal_tasks import TASKS, Data, Task

import trainmedic

OUT = Path(__file__).parent / "results" / "heal.json"
CASES = [("start x10", 10.0, None), ("start x30", 30.0, None), ("start x100", 100.0, None),
         ("jump x30 at 40%", 1.0, 30.0)]
GOAL = 1.10
DRIVERS = ("plain", "heal", "proto")
#: ``--batch``: the heal driver gets ``medic.step(loss, batch=(x, y))`` (the targets: the constant level)
PASS_BATCH = False
#: ``--loss-fn``: heal's Medic also gets ``loss_fn=`` (the task's loss) and ``batch=``: what the rate audit
#: (TM343, ``trainmedic/heal/rate_audit.py``) needs to replay batches on copies; pre-flight and forensics use it too
PASS_LOSS_FN = False


@dataclass
class Run:
    task: str
    driver: str
    lr: float
    seed: int
    jump: float | None
    final: float  # validation loss of the weights the run ended with
    vals: list[float]  # validation loss after each epoch
    stopped_epoch: int | None  # the epoch after which should_stop ended the loop
    seconds: float
    findings: list[dict[str, Any]] = field(default_factory=list)  # code, severity, step
    actions: list[dict[str, Any]] = field(default_factory=list)  # the driver's action events
    probe_steps: int = 0

    def counts(self) -> Counter[str]:
        return Counter(a["action"] for a in self.actions)


class Plain:
    """The ordinary loop: ``optimizer.step()``, whatever the loss."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.should_stop = False
        self.events: list[dict[str, Any]] = []
        self.findings: list[Any] = []

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.step()

    def end_epoch(self, val_loss: float) -> None:
        pass


def make_driver(kind: str, model: torch.nn.Module, opt: torch.optim.Optimizer, data: Data, loss_fn: Any = None) -> Any:
    if kind == "plain":
        return Plain(model, opt)
    if kind == "heal":
        return trainmedic.Medic(model, opt, mode="heal", console=False, loss_fn=loss_fn if PASS_LOSS_FN else None)
    if kind == "proto":
        from heal_prototype import PrototypeHeal

        return PrototypeHeal(model, opt, constant_level=data.constant_level)
    raise ValueError(kind)


def jump_epoch(task: Task) -> int:
    return round(0.4 * task.epochs)


def train(task: Task, lr: float, seed: int, driver: str, jump: float | None = None) -> Run:
    """One run. The data, initialization and batch order depend only on the task and the seed."""
    data = task.data()
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = task.model()
    opt = task.optimizer(list(model.parameters()), lr)
    drv = make_driver(driver, model, opt, data, task.loss_fn)
    vals: list[float] = []
    stopped = None
    for epoch in range(task.epochs):
        if jump is not None and epoch == jump_epoch(task):
            for g in opt.param_groups:  # the user's own loop raises the rate (a restart, a typo)
                g["lr"] *= jump
        for xb, yb in task.batches(data, epoch, seed):
            loss = task.loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if (PASS_BATCH or PASS_LOSS_FN) and driver == "heal":
                drv.step(loss, batch=(xb, yb))
            else:
                drv.step(loss)
        v = task.evaluate(model, data)
        vals.append(v)
        drv.end_epoch(val_loss=v)
        if drv.should_stop:
            stopped = epoch
            break
    final = task.evaluate(model, data)
    run = Run(task.name, driver, lr, seed, jump, final, vals, stopped, time.perf_counter() - t0)
    if driver != "plain":
        run.findings = [{"code": f.code, "severity": f.severity, "step": f.step, "message": f.message}
                        for f in drv.findings]
        run.actions = [_compact(e) for e in drv.events if e.get("type") == "action"]
        run.probe_steps = int(getattr(drv, "probe_steps", 0))
    return run


def _compact(event: dict[str, Any]) -> dict[str, Any]:
    return {k: _round(v) for k, v in event.items() if k != "type"}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.4g}") if math.isfinite(v) else v
    if isinstance(v, (list, tuple)):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------
class Cache:
    """Plain runs are shared: the 10x and 100x starts are points of the half-decade grid.

    ``keep`` (``--cache DIR``, for development): runs of the drivers named in ``frozen`` (plain and the
    frozen prototype) are also kept on disk and reused by later invocations, so iterating on heal does not
    retrain the grid.
    """

    def __init__(self, keep: Path | None = None, frozen: tuple[str, ...] = ("plain", "proto")) -> None:
        self.runs: dict[tuple[str, str, str, int, str], Run] = {}
        self.keep = keep
        self.frozen = frozen
        if keep is not None and (keep / "runs.json").exists():
            for r in json.loads((keep / "runs.json").read_text()):
                run = Run(**r)
                self.runs[self._key(run.task, run.driver, run.lr, run.seed, run.jump)] = run

    @staticmethod
    def _key(task: str, driver: str, lr: float, seed: int, jump: float | None) -> tuple[str, str, str, int, str]:
        return (task, driver, f"{lr:.5g}", seed, f"{jump}")

    def get(self, task: Task, lr: float, seed: int, driver: str, jump: float | None = None) -> Run:
        key = self._key(task.name, driver, lr, seed, jump)
        if key not in self.runs:
            self.runs[key] = train(task, lr, seed, driver, jump)
        return self.runs[key]

    def save(self) -> None:
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            runs = [asdict(r) for r in self.runs.values() if r.driver in self.frozen]
            (self.keep / "runs.json").write_text(json.dumps(runs, default=float))


def tune(task: Task, seeds: list[int], cache: Cache) -> tuple[float, dict[str, float]]:
    grid = {lr: statistics.fmean(cache.get(task, lr, s, "plain").final for s in seeds) for lr in task.grid}
    best = min(grid, key=lambda lr: grid[lr])
    return best, {f"{lr:g}": v for lr, v in grid.items()}


def ratio(run: Run, tuned: Run) -> float:
    return run.final / tuned.final if math.isfinite(run.final) else math.inf


def bench_task(task: Task, seeds: list[int], drivers: list[str], cache: Cache) -> dict[str, Any]:
    t0 = time.perf_counter()
    tuned_lr, grid = tune(task, seeds, cache)
    print(f"\n== {task.name}: {task.kind}; grid mean final val: "
          + "  ".join(f"{k}:{v:.3g}" for k, v in grid.items()) + f"  -> tuned lr {tuned_lr:g}", flush=True)
    rows = []
    for seed in seeds:
        tuned = cache.get(task, tuned_lr, seed, "plain")
        # healthy runs under heal: they must end where the plain loop ends
        for d in drivers:
            if d == "plain":
                continue
            r = cache.get(task, tuned_lr, seed, d)
            rows.append(_row(task, "healthy (tuned lr)", seed, tuned, {d: r}))
        for case, mult, jump in CASES:
            runs = {d: cache.get(task, tuned_lr * mult, seed, d, jump) for d in drivers}
            rows.append(_row(task, case, seed, tuned, runs))
    for r in rows:
        print(_format_row(r), flush=True)
    return {"task": task.name, "kind": task.kind, "grid": grid, "tuned_lr": tuned_lr, "rows": rows,
            "seconds": time.perf_counter() - t0}


def _row(task: Task, case: str, seed: int, tuned: Run, runs: dict[str, Run]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task.name, "case": case, "seed": seed, "tuned_val": tuned.final,
                           "tuned_vals": tuned.vals}
    for d, r in runs.items():
        c = r.counts()
        row[d] = {"lr": r.lr, "final": r.final, "ratio": ratio(r, tuned), "vals": r.vals,
                  "identical_to_plain": r.final == tuned.final and r.vals == tuned.vals,
                  "stopped_epoch": r.stopped_epoch, "rollbacks": c.get("rollback", 0),
                  "lr_changes": sum(1 for a in r.actions if "lr_after" in a and a.get("lr_after") != a.get("lr_before")),
                  "probes": c.get("probe", 0), "probe_steps": r.probe_steps,
                  "findings": sorted({f["code"] for f in r.findings}),
                  "problem_findings": sorted({f["code"] for f in r.findings if f["severity"] in ("warning", "error")}),
                  "findings_detail": r.findings, "actions": r.actions, "seconds": r.seconds}
    return row


def _fmt_ratio(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
    return f"{x:.2f}" if x < 1000 else f"{x:.1e}"


def _format_row(r: dict[str, Any]) -> str:
    parts = [f"  {r['case']:<20} s{r['seed']}  tuned {r['tuned_val']:.4g}"]
    for d in DRIVERS:
        if d not in r:
            continue
        x = r[d]
        s = f"{d} {_fmt_ratio(x['ratio'])}x"
        if d != "plain":
            extra = []
            if r["case"].startswith("healthy"):
                extra.append("identical" if x["identical_to_plain"] else "differs")
            if x["rollbacks"]:
                extra.append(f"rb{x['rollbacks']}")
            if x["lr_changes"]:
                extra.append(f"lr{x['lr_changes']}")
            if x["probe_steps"]:
                extra.append(f"probe {x['probes']}/{x['probe_steps']}st")
            if x["stopped_epoch"] is not None:
                extra.append(f"stop@{x['stopped_epoch']}")
            if x["problem_findings"]:
                extra.append(",".join(x["problem_findings"]))
            s += f" [{' '.join(extra)}]" if extra else ""
        parts.append(s)
    return "  ".join(parts)


def summarize(results: list[dict[str, Any]], drivers: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for d in drivers:
        bad = [r[d] for t in results for r in t["rows"] if d in r and not r["case"].startswith("healthy")]
        within = sum(1 for x in bad if x["ratio"] <= GOAL)
        s = {"cases": len(bad), "within_1.1x": within, "share": within / len(bad) if bad else math.nan,
             "median_ratio": statistics.median(x["ratio"] for x in bad) if bad else math.nan,
             "probe_steps": sum(x["probe_steps"] for x in bad), "probes": sum(x["probes"] for x in bad)}
        if d != "plain":
            healthy = [r[d] for t in results for r in t["rows"] if d in r and r["case"].startswith("healthy")]
            s["healthy_runs"] = len(healthy)
            s["healthy_identical"] = sum(x["identical_to_plain"] for x in healthy)
            s["healthy_worst_ratio"] = max((x["ratio"] for x in healthy), default=math.nan)
            s["healthy_with_problem_findings"] = sum(bool(x["problem_findings"]) for x in healthy)
        summary[d] = s
    return summary


def print_summary(results: list[dict[str, Any]], summary: dict[str, Any], drivers: list[str]) -> None:
    print("\nfinal validation loss over the tuned run's (same seed), per task and case; seeds joined by /")
    header = f"{'task':<20} {'case':<16} " + " ".join(f"{d:>18}" for d in drivers)
    print(header)
    for t in results:
        cases: dict[str, list[dict[str, Any]]] = {}
        for r in t["rows"]:
            cases.setdefault(r["case"], []).append(r)
        for case, rs in cases.items():
            cells = []
            for d in drivers:
                vals = [_fmt_ratio(r[d]["ratio"]) for r in rs if d in r]
                cells.append(f"{'/'.join(vals) if vals else '-':>18}")
            print(f"{t['task']:<20} {case:<16} " + " ".join(cells))
    print()
    for d, s in summary.items():
        line = (f"{d:<6} within {GOAL}x of tuned: {s['within_1.1x']}/{s['cases']} ({s['share']:.0%}), "
                f"median ratio {_fmt_ratio(s['median_ratio'])}")
        if d != "plain":
            line += (f"; probes {s['probes']} ({s['probe_steps']} steps); healthy runs identical to plain "
                     f"{s['healthy_identical']}/{s['healthy_runs']}, worst healthy ratio "
                     f"{_fmt_ratio(s['healthy_worst_ratio'])}, healthy runs with warnings/errors "
                     f"{s['healthy_with_problem_findings']}")
        print(line)


def explain(path: Path, driver: str, only_misses: bool = True) -> None:
    """Print, for each case (the misses by default), what the driver did step by step: findings, actions
    (rollbacks and probes with the rate before and after), skipped and clipped steps counted."""
    data = json.loads(path.read_text())
    for t in data["tasks"]:
        for r in t["rows"]:
            x = r.get(driver)
            if x is None:
                continue
            healthy = r["case"].startswith("healthy")
            if only_misses and (x["identical_to_plain"] if healthy else x["ratio"] <= GOAL):
                continue
            print(f"--- {t['task']} | {r['case']} | seed {r['seed']}: {driver} {_fmt_ratio(x['ratio'])}x the tuned "
                  f"run (lr {x['lr']:.3g}, tuned {t['tuned_lr']:.3g})")
            print(f"    validation per epoch, tuned: {' '.join(f'{v:.3g}' for v in r['tuned_vals'])}")
            print(f"    validation per epoch, {driver}: {' '.join(f'{v:.3g}' for v in x['vals'])}")
            lines = [(f["step"], 0, f"finding {f['code']}: {f['message']}") for f in x["findings_detail"]]
            counted = Counter(a["action"] for a in x["actions"] if a["action"] in ("skip-step", "clip"))
            firsts = {}
            for a in x["actions"]:
                if a["action"] in ("skip-step", "clip"):
                    firsts.setdefault(a["action"], a["step"])
                    continue
                detail = {k: v for k, v in a.items() if k not in ("step", "epoch", "action", "reason", "trace")}
                lines.append((a["step"], 1, f"{a['action']} ({a['reason']}): {detail}"))
            for action, n in counted.items():
                lines.append((firsts[action], 1, f"{action} x{n} (first at this step)"))
            for step, _, text in sorted(lines):
                print(f"    step {step}: {text}")


def markdown(path: Path, driver: str = "heal") -> None:
    """Print the per task x case table of a results JSON as markdown: the driver's final validation over
    the tuned run's, the plain run's at the same rate, rollbacks, probes and probe steps (seeds joined by /)."""
    data = json.loads(path.read_text())
    print(f"| task | case | plain / tuned | {driver} / tuned | rollbacks | probes (steps) | {driver} findings |")
    print("|---|---|---|---|---|---|---|")
    for t in data["tasks"]:
        cases: dict[str, list[dict[str, Any]]] = {}
        for r in t["rows"]:
            cases.setdefault(r["case"], []).append(r)
        for case, rs in cases.items():
            xs = [r[driver] for r in rs if driver in r]
            if not xs:
                continue
            plain = "/".join(_fmt_ratio(r["plain"]["ratio"]) for r in rs if "plain" in r) or "-"
            ratios = "/".join(("**" + _fmt_ratio(x["ratio"]) + "**") if x["ratio"] <= GOAL else _fmt_ratio(x["ratio"])
                              for x in xs)
            if case.startswith("healthy"):
                ratios += " (" + "/".join("identical" if x["identical_to_plain"] else "differs" for x in xs) + ")"
            found = "/".join(",".join(x["problem_findings"]) or "-" for x in xs)
            print(f"| {t['task']} | {case} | {plain} | {ratios} | {'/'.join(str(x['rollbacks']) for x in xs)} | "
                  f"{'/'.join(str(x['probes']) for x in xs)} ({'/'.join(str(x['probe_steps']) for x in xs)}) | {found} |")
    s = data["summary"].get(driver, {})
    if s:
        print(f"\n{driver}: {s['within_1.1x']}/{s['cases']} within {GOAL}x, median {_fmt_ratio(s['median_ratio'])}; "
              f"{s['probes']} probes, {s['probe_steps']} probe steps; healthy identical "
              f"{s['healthy_identical']}/{s['healthy_runs']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--quick", action="store_true", help="seed 0 only")
    ap.add_argument("--tasks", nargs="+", help="task names (default: all)")
    ap.add_argument("--drivers", nargs="+", default=list(DRIVERS), choices=DRIVERS)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--cache", type=Path, help="development: keep plain and proto runs here and reuse them")
    ap.add_argument("--explain", metavar="DRIVER", choices=DRIVERS[1:],
                    help="print what DRIVER did in each missed case of the JSON at --out, then exit")
    ap.add_argument("--markdown", metavar="DRIVER", choices=DRIVERS[1:],
                    help="print the table of the JSON at --out as markdown for DRIVER, then exit")
    ap.add_argument("--batch", action="store_true",
                    help="heal's Medic also gets batch=(x, y) each step (the targets: the constant-prediction level)")
    ap.add_argument("--loss-fn", action="store_true",
                    help="heal's Medic also gets loss_fn= (the task's loss) and batch=: the rate audit (TM343) needs both")
    args = ap.parse_args()
    global PASS_BATCH, PASS_LOSS_FN
    PASS_BATCH = args.batch
    PASS_LOSS_FN = args.loss_fn
    if args.markdown:
        markdown(Path(args.out), args.markdown)
        return
    if args.explain:
        explain(Path(args.out), args.explain)
        return
    torch.set_num_threads(1)
    seeds = [0] if args.quick else args.seeds
    drivers = ["plain", *[d for d in args.drivers if d != "plain"]]
    tasks = [t for t in TASKS if not args.tasks or t.name in args.tasks]
    cache = Cache(args.cache)
    t0 = time.perf_counter()
    results = []
    for t in tasks:
        results.append(bench_task(t, seeds, drivers, cache))
        cache.save()
    summary = summarize(results, drivers)
    print_summary(results, summary, drivers)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": seeds, "goal": GOAL, "cases": [c[0] for c in CASES], "batch": PASS_BATCH, "loss_fn": PASS_LOSS_FN,
                               "summary": summary, "tasks": results}, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

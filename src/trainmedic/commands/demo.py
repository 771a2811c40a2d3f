"""``trainmedic demo``: the embedded default. Runs the pathology zoo under watch and heal, then the
house-price ``fit`` on the data shipped with the package, and ends with the path of the dashboard
(``index.html``) that links every report. ``--json`` prints the table as JSON on stdout instead."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trainmedic.errors import UsageError
from trainmedic.findings import jsonable
from trainmedic.zoo import CASES
from trainmedic.zoo.evaluate import evaluate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pathology zoo and the house-price fit on shipped data",
                       description="Run every zoo script under watch and heal (and without its fault, as the "
                                   "healthy baseline), then `trainmedic fit` on the shipped house-price data; "
                                   "write a report per run and a dashboard, OUT/index.html, that links them.")
    p.add_argument("--out", help="where to write the reports (default runs/demo-<timestamp>)")
    p.add_argument("--no-fit", action="store_true", help="skip the house-price fit")
    p.add_argument("--cases", nargs="*", metavar="CASE", help="only these zoo cases (module names)")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (progress goes to stderr)")
    p.set_defaults(func=run)


def _out_dir(arg: str | None) -> Path:
    out = Path(arg or f"runs/demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".trainmedic-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the reports to {out}: {exc.strerror or exc}") from None
    return out


def run(args: argparse.Namespace) -> int:
    names = [c.module for c in CASES]
    unknown = [c for c in args.cases or [] if c not in names]
    if unknown:
        raise UsageError(f"unknown zoo case {', '.join(unknown)}; the cases are: {', '.join(names)}")
    out = _out_dir(args.out)
    import torch

    from trainmedic.report.dashboard import write_dashboard

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    # Progress and tables for a person; with --json they go to stderr and stdout holds only the JSON.
    console = Console(stderr=args.json) if Console(stderr=args.json).is_terminal else \
        Console(stderr=args.json, width=130)
    t0 = time.perf_counter()
    cases = [c for c in CASES if not args.cases or c.module in args.cases]
    console.print(f"[bold]trainmedic demo[/bold]: {len(cases)} zoo scripts, each under watch and heal "
                  "(and without its fault, as the healthy baseline)")
    rows = []
    with console.status("training...") as status:
        for case in cases:
            status.update(f"training {case.module} ...")
            rows.append(evaluate(case, seed=0, out=out / "zoo"))
    if not args.json:
        console.print(_table(rows))
    detected = [r for r in rows if not r["control"] and r["detected"]]
    faults = [r for r in rows if not r["control"]]
    alarms = sum(len(r["false_alarms"]) for r in rows)
    console.print(f"found {len(detected)}/{len(faults)} faults; {alarms} false alarms on healthy runs. "
                  "heal / healthy: the heal run's final loss over the same script's without its fault, "
                  "where a repair exists")
    fit_summary = None if args.no_fit else _fit(console, out / "house-prices")
    seconds = time.perf_counter() - t0
    index = write_dashboard(out, rows, fit_summary, seconds=seconds)
    if args.json:
        print(json.dumps(jsonable({"version": 1, "out": str(out), "index": str(index.resolve()),
                                   "seconds": round(seconds, 1), "cases": [_json_row(r) for r in rows],
                                   "fit": _json_fit(fit_summary)}), indent=1))
    else:
        console.print(f"\nreport: [bold]{index.resolve()}[/bold]")
    return 0


def _ratio(r: dict[str, Any]) -> float | None:
    if r.get("control") or not r.get("healable") or not r.get("healthy_metric"):
        return None
    ratio = r["heal_metric"] / r["healthy_metric"]
    return ratio if math.isfinite(ratio) else None


def _json_row(r: dict[str, Any]) -> dict[str, Any]:
    """One zoo row as ``--json`` prints it: the table's columns, with the numbers behind them."""
    keys = ("case", "title", "control", "expect", "detected", "found", "first_code", "first_step", "actions",
            "healable", "watch_metric", "heal_metric", "healthy_metric", "false_alarms", "seconds")
    row = {k: r.get(k) for k in keys if k in r}
    row["heal_over_healthy"] = _ratio(r)
    row["report"] = f"zoo/{r['case']}/report.html"
    return row


def _json_fit(fit: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(fit, dict):
        return None
    from trainmedic.report.dashboard import NOTE_001_LOG_RMSE

    models = {k: v.get("mean") for k, v in (fit.get("models") or {}).items() if isinstance(v, dict)}
    return {"metric": fit.get("metric"), "mean": fit.get("mean"), "std": fit.get("std"),
            "best_model": fit.get("best_model"), "models": models, "note_001_pipeline": NOTE_001_LOG_RMSE,
            "report": "house-prices/report.html"}


def _table(rows: list[dict]) -> Table:
    t = Table(title="the pathology zoo", show_lines=False)
    for col in ("case", "expected", "found (code@step, watch)", "heal did", "heal / healthy loss"):
        t.add_column(col)
    for r in rows:
        if r["control"]:
            found = ", ".join(r["false_alarms"]) or "[green]nothing (healthy control)[/green]"
            t.add_row(r["case"], "-", found, "-", "-")
            continue
        mark = "[green]" if r["detected"] else "[red]"
        found = ", ".join(r["found"]) or "nothing"
        actions = ", ".join(f"{k} x{v}" for k, v in r["actions"].items()) or "reported only"
        ratio = _ratio(r)
        t.add_row(r["case"], "/".join(r["expect"]), f"{mark}{found}[/]", actions,
                  f"{ratio:.2f}" if ratio is not None else ("nan" if r["healable"] else "-"))
    return t


def _fit(console: Console, out: Path):
    try:
        from trainmedic.tabular.fit import run_demo_fit
    except ImportError:
        console.print("(the tabular front end is not available in this build: fit skipped)")
        return None
    console.print("\n[bold]house prices[/bold]: trainmedic fit on the shipped Kaggle data (5-fold CV, log-RMSE)")
    summary = run_demo_fit(out)
    from trainmedic.report.dashboard import NOTE_001_LOG_RMSE

    console.print(f"cv {summary.get('metric', '')}: {summary.get('mean', float('nan')):.4f} "
                  f"± {summary.get('std', float('nan')):.4f} (note 001's pipeline: {NOTE_001_LOG_RMSE})")
    return summary

"""``trainmedic demo``: the embedded default. Runs the pathology zoo under watch and heal, then the
house-price ``fit`` on the data shipped with the package, and ends with the path of a report to open."""

from __future__ import annotations

import argparse
import datetime as dt
import html
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainmedic.findings import atomic_write_text
from trainmedic.zoo import CASES
from trainmedic.zoo.evaluate import evaluate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pathology zoo and the house-price fit on shipped data")
    p.add_argument("--out", help="where to write the reports (default runs/demo-<timestamp>)")
    p.add_argument("--no-fit", action="store_true", help="skip the house-price fit")
    p.add_argument("--cases", nargs="*", help="only these zoo cases (module names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    console = Console() if Console().is_terminal else Console(width=130)
    out = Path(args.out or f"runs/demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    cases = [c for c in CASES if not args.cases or c.module in args.cases]
    console.print(f"[bold]trainmedic demo[/bold]: {len(cases)} zoo scripts, each under watch and heal "
                  "(and without its fault, as the healthy baseline)")
    rows = []
    with console.status("training...") as status:
        for case in cases:
            status.update(f"training {case.module} ...")
            rows.append(evaluate(case, seed=0, out=out / "zoo"))
    console.print(_table(rows))
    detected = [r for r in rows if not r["control"] and r["detected"]]
    faults = [r for r in rows if not r["control"]]
    alarms = sum(len(r["false_alarms"]) for r in rows)
    console.print(f"found {len(detected)}/{len(faults)} faults; {alarms} false alarms on healthy runs. "
                  "heal / healthy: the heal run's final loss over the same script's without its fault, "
                  "where a repair exists")

    links = [(f"zoo/{r['case']}/report.html", f"{r['title']} ({r['case']})") for r in rows]
    if not args.no_fit:
        fit_summary = _fit(console, out / "house-prices")
        if fit_summary is not None:
            links.append(("house-prices/report.html", "house-price fit (5-fold CV)"))
    index = out / "index.html"
    atomic_write_text(index, _index_html(links))
    console.print(f"\nreport: [bold]{index.resolve()}[/bold]")
    return 0


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
        ratio = r["heal_metric"] / r["healthy_metric"] if r["healthy_metric"] else math.nan
        ratio_s = (f"{ratio:.2f}" if math.isfinite(ratio) else "nan") if r["healable"] else "-"
        t.add_row(r["case"], "/".join(r["expect"]), f"{mark}{found}[/]", actions, ratio_s)
    return t


def _fit(console: Console, out: Path):
    try:
        from trainmedic.tabular.fit import run_demo_fit
    except ImportError:
        console.print("(the tabular front end is not available in this build: fit skipped)")
        return None
    console.print("\n[bold]house prices[/bold]: trainmedic fit on the shipped Kaggle data (5-fold CV, log-RMSE)")
    summary = run_demo_fit(out)
    console.print(f"cv {summary.get('metric', '')}: {summary.get('mean', float('nan')):.4f} "
                  f"± {summary.get('std', float('nan')):.4f}")
    return summary


def _index_html(links: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(title)}</a></li>' for href, title in links)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>trainmedic demo</title></head><body>"
            f"<h1>trainmedic demo</h1><ul>{items}</ul></body></html>\n")

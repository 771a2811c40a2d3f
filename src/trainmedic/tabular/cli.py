"""``trainmedic check-data`` and ``trainmedic fit``.

Exit codes of check-data: 0 no error-severity finding, 1 at least one, 2 unusable input (one line on
stderr, no traceback: a :class:`~trainmedic.errors.UsageError`). ``fit`` exits 0 on success and 2 on
unusable input, and then leaves ``--out`` untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trainmedic.errors import UsageError

TASK_CHOICES = ("auto", "regression", "log-regression", "count", "binary", "multiclass")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-data",
        help="pre-flight a CSV/Parquet table: the data rules TM101-TM115 and TM118",
        description="Check a table for the data problems TM101-TM115 and TM118 (trainmedic explain TM1xx). Exit code 0: no "
        "error-severity finding; 1: at least one; 2: unusable input.",
    )
    p.add_argument("path", help="CSV (any common dialect) or Parquet file")
    p.add_argument("--target", help="the target column (enables TM102, TM110-TM112)")
    p.add_argument("--test", help="a test file to compare with (TM114)")
    p.add_argument("--json", action="store_true", help="print findings.json to stdout instead of a table")
    p.set_defaults(func=run_check_data)

    f = sub.add_parser(
        "fit",
        help="cross-validate an MLP (under Medic), LightGBM, a linear model and their blend on a table",
        description="K-fold cross-validated models chosen for the kind of target, with findings, a report and "
        "a Kaggle-style submission. Writes DIR/cv.json, DIR/findings.json, DIR/report.html "
        "(and DIR/submission.csv with --test).",
    )
    f.add_argument("path", help="training CSV or Parquet file")
    f.add_argument("--target", required=True, help="the column to predict")
    f.add_argument("--test", help="test file to predict (same columns; the target may be absent)")
    f.add_argument("--folds", type=int, default=5, help="number of shuffled cross-validation folds (default 5)")
    f.add_argument("--out", default="runs/fit", help="output directory (default runs/fit)")
    f.add_argument("--task", choices=TASK_CHOICES, default="auto",
                   help="override the target kind decided from the data")
    f.add_argument("--seed", type=int, default=0, help="seed of the folds and models (default 0)")
    f.add_argument("--models", default="mlp,lightgbm,linear",
                   help="comma-separated subset of mlp,lightgbm,linear (default all)")
    f.add_argument("--epochs", type=int, help="maximum MLP epochs (default 300, early stopping decides)")
    f.add_argument("--fast", action="store_true", help="a quick setting: fewer epochs, bags and boosting rounds")
    f.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="about this many seconds for the whole fit: each fold and model gets a share of what "
                        "reading and checks leave, the network and LightGBM stop at theirs with the best model so far")
    f.add_argument("--threads", type=int, default=1, help="LightGBM threads (default 1)")
    f.add_argument("--search", type=int, default=0, metavar="N",
                   help="tune each model with an Optuna study of N trials in every fold, choosing on an inner split "
                        "of the fold's training rows (never its validation rows); within --time-budget when given")
    f.add_argument("--select", action="store_true",
                   help="cross-validated feature selection in every fold: columns that do not help are left out "
                        "when that improves the fold's inner validation score")
    f.add_argument("--text", action="append", default=[], metavar="COLUMN",
                   help="keep a free-text column (left out by default) as TF-IDF components and a cross-fitted "
                        "linear score of its words, fitted inside the folds; repeat for several")
    f.add_argument("--save", metavar="DIR",
                   help="also store the fitted preprocessing and models in DIR (no pickle), for `trainmedic predict`")
    f.add_argument("--json", action="store_true", help="print cv.json to stdout (no progress)")
    f.add_argument("--quiet", action="store_true",
                   help="no progress (by default: bars on a terminal, one log line per fold and model otherwise)")
    f.set_defaults(func=run_fit)

    pr = sub.add_parser(
        "predict",
        help="apply the models stored by `fit --save DIR` to a new table",
        description="Apply every fold's saved model, averaged and blended as `fit` does for --test, to a CSV or "
        "Parquet file with the training columns (the target may be absent). Writes id,target like fit's "
        "submission.csv.",
    )
    pr.add_argument("model_dir", metavar="DIR", help="the folder written by `trainmedic fit --save DIR`")
    pr.add_argument("path", help="CSV or Parquet file to predict")
    pr.add_argument("--out", required=True, help="the CSV file to write the predictions to")
    pr.set_defaults(func=run_predict)


# ---- check-data --------------------------------------------------------------------------------------------
def run_check_data(args: argparse.Namespace) -> int:
    from trainmedic.findings import findings_document
    from trainmedic.tabular.checks import check_data

    findings = check_data(args.path, target=args.target, test=args.test)
    if args.json:
        print(json.dumps(findings_document(findings), indent=2, allow_nan=False))
    else:
        _print_findings(findings, args.path)
    return 1 if any(f.severity == "error" for f in findings) else 0


def _print_findings(findings: list[Any], path: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        for f in findings:
            print(str(f))
        return
    console = Console()
    if not findings:
        console.print(f"[green]{path}: no data problems found[/green]")
        return
    table = Table(title=f"trainmedic check-data {path}", show_lines=True)
    table.add_column("code", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding")
    colors = {"error": "red", "warning": "yellow", "info": "cyan"}
    for f in findings:
        msg = f.message + (f"\n[dim]→ {f.action}[/dim]" if f.action else "")
        table.add_row(f"{f.code}\n{f.name}", f"[{colors.get(f.severity, '')}]{f.severity}[/]", msg)
    console.print(table)
    n_err = sum(f.severity == "error" for f in findings)
    console.print(f"{len(findings)} finding(s), {n_err} error(s). `trainmedic explain CODE` says more.")


# ---- fit ---------------------------------------------------------------------------------------------------
def run_fit(args: argparse.Namespace) -> int:
    from trainmedic.tabular.fit import FitConfig, demo_config, fit_table

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    cfg = demo_config() if args.fast else FitConfig()
    cfg.folds = args.folds
    cfg.seed = args.seed
    cfg.task = None if args.task == "auto" else args.task
    cfg.models = models
    cfg.progress = not (args.json or args.quiet)
    if args.time_budget is not None:
        if not args.time_budget > 0:
            raise UsageError(f"--time-budget must be a positive number of seconds, got {args.time_budget:g}")
        cfg.time_budget = args.time_budget
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    cfg.threads = args.threads
    if args.search < 0:
        raise UsageError(f"--search must be a number of trials (0 or more), got {args.search}")
    cfg.search = args.search
    cfg.select = bool(args.select)
    cfg.text = tuple(args.text)
    if args.epochs is not None:
        if args.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
        cfg.mlp.max_epochs = args.epochs
    res = fit_table(args.path, args.target, test=args.test, out=args.out, config=cfg, save=args.save)
    if args.json:
        print(json.dumps(res.cv, indent=2, default=str))
        return 0
    _print_summary(res)
    return 0


# ---- predict -----------------------------------------------------------------------------------------------
def run_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trainmedic.findings import atomic_write_text
    from trainmedic.tabular.io import read_table
    from trainmedic.tabular.outdir import check_writable_dir
    from trainmedic.tabular.saved import SavedFit

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give the path of the CSV file to write")
    check_writable_dir(out.parent if str(out.parent) else Path("."), "--out")
    model = SavedFit(args.model_dir)
    df, rep = read_table(args.path)
    preds = model.predict_frame(df, rep.source)
    try:
        atomic_write_text(out, preds.to_csv(index=False))
    except OSError as exc:
        raise UsageError(f"could not write --out {out} ({exc.strerror or exc})") from None
    print(f"{len(preds)} predictions of {model.manifest['target']!r} written to {out}", file=sys.stderr)
    return 0


def _print_summary(res: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    cv = res.cv
    console = Console()
    table = Table(title=f"{cv['target']}: {cv['task']} — {cv['metric']} over {cv['n_folds']} folds (lower is better)")
    table.add_column("model")
    table.add_column(f"mean {cv['metric']}", justify="right")
    table.add_column("std", justify="right")
    extra = [k for k, v in cv["models"]["blend"].items() if isinstance(v, dict) and "mean" in v]
    for k in extra:
        table.add_column(k, justify="right")
    for name, m in cv["models"].items():
        style = "bold green" if name == cv["best_model"] else None
        table.add_row(name, f"{m['mean']:.4f}", f"{m['std']:.4f}",
                      *[f"{m[k]['mean']:.4f}" if k in m else "" for k in extra], style=style)
    console.print(table)
    console.print(f"task: {cv['task_reason']}; {cv['rows']} rows; {cv['time_s']} s")
    searched = {n: m["search"] for n, m in cv["models"].items() if "search" in m}
    if searched:
        console.print("search (outer mean, chosen vs default setting): " + "; ".join(
            f"{n} {s['outer_mean']:.4f} vs {s['default_outer_mean']:.4f} ({s['folds_changed']} folds changed)"
            for n, s in searched.items()), highlight=False, soft_wrap=True)
    if cv.get("selection"):
        sel = cv["selection"]
        console.print(f"feature selection kept in {sel['folds_kept']}/{cv['n_folds']} folds; dropped in every kept "
                      f"fold: {', '.join(sel['dropped_in_every_kept_fold']) or 'none'}", highlight=False,
                      soft_wrap=True)
    if cv.get("dropped_columns"):
        console.print("not used: " + "; ".join(f"{c} ({why})" for c, why in cv["dropped_columns"].items()),
                      markup=False, highlight=False, soft_wrap=True)
    for f in res.findings:
        if f.severity in ("error", "warning"):
            console.print(f"  [yellow]{f.code}[/yellow] {f.name}: {f.message}", highlight=False, soft_wrap=True)
    for key, path in res.files.items():
        console.print(f"{key}: {path}")

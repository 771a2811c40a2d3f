"""``trainmedic report DIR``: rebuild ``DIR/report.html`` from the files a run or a fit left there."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trainmedic.errors import UsageError

INPUTS = ("events.jsonl", "findings.json", "cv.json")  # and a fit's oof.json, read when it is there


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="rebuild report.html from a run's or a fit's output directory",
        description="Rebuild DIR/report.html (self-contained: open it in any browser, offline) from "
                    "DIR/events.jsonl, DIR/findings.json and DIR/cv.json. A truncated or partly corrupt "
                    "events.jsonl gives a report of what is readable, with a note.")
    p.add_argument("dir", metavar="DIR", help="the output directory of `trainmedic run`, `fit` or Medic.save_report")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report there instead of DIR/report.html")
    p.add_argument("--json", action="store_true",
                   help="print JSON on stdout: the report's path, notes on what could not be read, and the "
                        "findings (as in findings.json)")
    p.set_defaults(func=run)


ROWS_NOTE = ("rebuilt by `trainmedic report` without oof.json (the per-row out-of-fold predictions; a fit "
             "too large for the file, or one older than it): the out-of-fold figures and the largest errors "
             "are missing.")


def _is_fit(out: Path, cv: dict | None) -> bool:
    """A folder written by ``fit`` (cv.json with its models, no training events) gets the fit page back."""
    return not (out / "events.jsonl").exists() and isinstance(cv, dict) and isinstance(cv.get("models"), dict) \
        and "task" in cv and "metric" in cv


def _fit_page(out: Path, data) -> str:
    """The fit's own page from what the folder holds; a cv.json the page cannot read falls back to the run page."""
    from trainmedic.findings import Finding
    from trainmedic.report.html import render
    from trainmedic.tabular.report import plots_from_document, render_fit_report

    plots = None
    if (out / "oof.json").is_file():
        try:
            plots = plots_from_document(json.loads((out / "oof.json").read_text()))
        except (OSError, ValueError) as exc:
            data.notes.append(f"oof.json could not be read ({type(exc).__name__}); the out-of-fold figures are missing.")
    notes = data.notes if plots is not None else [ROWS_NOTE, *data.notes]
    try:
        findings = [Finding.from_dict(f) for f in data.findings]
        return render_fit_report(data.cv, findings, plots, page_notes=notes)
    except (KeyError, TypeError, ValueError) as exc:
        data.notes.append(f"cv.json could not be drawn as a fit page ({type(exc).__name__}: {exc}); "
                          "showing its contents instead.")
        return render(data)


def run(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not out.exists():
        raise UsageError(f"{out}: no such directory; give the output directory of a run or a fit")
    if not out.is_dir():
        raise UsageError(f"{out} is a file, not a directory; give the directory that holds events.jsonl")
    if not any((out / name).is_file() for name in INPUTS):
        raise UsageError(f"{out} holds none of {', '.join(INPUTS)}; is it a trainmedic output directory?")
    from trainmedic.findings import atomic_write_text, jsonable
    from trainmedic.report.html import load_report_data, render

    data = load_report_data(out)
    html = _fit_page(out, data) if _is_fit(out, data.cv) else render(data)
    target = Path(args.output) if args.output else out / "report.html"
    try:
        atomic_write_text(target, html)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}; choose another --output") from None
    if args.json:
        print(json.dumps({"version": 1, "report": str(target), "notes": data.notes,
                          "findings": [jsonable(f) for f in data.findings]}, indent=1))
        return 0
    for note in data.notes:
        print(f"trainmedic: note: {note}")
    print(target)
    return 0

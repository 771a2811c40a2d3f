"""The demo's landing page (``index.html`` of ``trainmedic demo``): the dashboard of the whole demo.

One row per zoo case: what it is, what watch mode found (the codes with the step of their first
occurrence, the expected ones marked), what heal did and how the healed run ended against the same
script without its fault, and a small loss curve of the run whose report the row links to. Then the
house-price fit against the pipeline of practitioner note 001. Styled like the reports (the same CSS),
self-contained and offline in the same way: images inline, no scripts, a CSP that forbids any fetch.

The rows are those of :func:`trainmedic.zoo.evaluate.evaluate`; the curves are read back from the
``events.jsonl`` each case's report was built from, so the page shows exactly what the reports show.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

from trainmedic.findings import atomic_write_text
from trainmedic.report.events import read_events
from trainmedic.report.figures import figure, png, rc_context, short, sparkline

# Practitioner note 001's own pipeline (d2l: a linear net trained with Adam on raw prices), 5-fold
# log-RMSE on the same house-price data, as benchmarks/tabular.py measures it.
NOTE_001_LOG_RMSE = 0.171
HEAL_TOLERANCE = 1.10  # heal "recovers" when its final loss is within 10 % of the healthy run's


def case_rows(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The dashboard's view of each zoo row, with its curve and the link to its report."""
    view = []
    for r in rows:
        case = str(r.get("case"))
        expect = set(r.get("expect") or [])
        found = []
        for item in r.get("found") or []:
            code, _, step = str(item).partition("@")
            found.append({"code": code, "step": step, "expected": code in expect})
        healthy, heal = _float(r.get("healthy_metric")), _float(r.get("heal_metric"))
        ratio = heal / healthy if math.isfinite(heal) and math.isfinite(healthy) and healthy > 0 else math.nan
        if r.get("control"):
            verdict = ("alarm", "false alarm") if r.get("false_alarms") else ("ok", "silent")
        else:
            verdict = ("ok", "found") if r.get("detected") else ("bad", "missed")
        outcome, outcome_class = _outcome(r, ratio)
        report = Path("zoo") / case / "report.html"
        events = out / "zoo" / case / "events.jsonl"
        curve = None
        if events.is_file():
            try:
                run = read_events(events)
                curve = sparkline(run, reference=healthy if r.get("healable") else None,
                                  first_step=_float(r.get("first_step")))
            except (OSError, ValueError):
                curve = None
        view.append({
            "case": case, "title": str(r.get("title") or case), "control": bool(r.get("control")),
            "expect": sorted(expect), "found": found, "false_alarms": list(r.get("false_alarms") or []),
            "first": (f"{r.get('first_code')} at step {r.get('first_step')}" if r.get("first_code") else ""),
            "verdict": verdict, "actions": [(str(k), v) for k, v in (r.get("actions") or {}).items()],
            "outcome": outcome, "outcome_class": outcome_class,
            "report": report.as_posix() if (out / report).is_file() else None, "curve": curve,
            "seconds": _float(r.get("seconds")),
        })
    return view


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _outcome(r: dict[str, Any], ratio: float) -> tuple[str, str]:
    """How the run that heal repaired ended, in words, and the cell's class ("ok", "bad" or neutral)."""
    if r.get("control"):
        return "", ""
    actions = r.get("actions") or {}
    if "restore-best" in actions:
        return "stopped early with the best epoch's weights", "ok"
    against = (f"{ratio:.2f}x the healthy run's final loss ({_float(r.get('heal_metric')):.4g} vs "
               f"{_float(r.get('healthy_metric')):.4g})") if math.isfinite(ratio) else ""
    if r.get("healable"):
        if not against:
            return "no healthy baseline to compare with", ""
        return against, "ok" if ratio <= HEAL_TOLERANCE else "bad"
    if not actions:
        return "reported only: the fix is in the code (see the report)", ""
    return (against + "; " if against else "") + "no automatic repair is expected to recover this fault", ""


def fit_view(fit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The house-price fit's score against note 001's pipeline, with a bar per model."""
    if not isinstance(fit, dict):
        return None
    models = fit.get("models") if isinstance(fit.get("models"), dict) else {}
    scores = {str(k): _float(v.get("mean")) for k, v in models.items() if isinstance(v, dict)}
    scores = {k: v for k, v in scores.items() if math.isfinite(v)}
    mean = _float(fit.get("mean"))
    best = fit.get("best_model") if fit.get("best_model") in scores else None
    view = {"metric": str(fit.get("metric", "score")), "mean": mean, "std": _float(fit.get("std")),
            "best": best, "note": NOTE_001_LOG_RMSE, "models": sorted(scores.items(), key=lambda kv: kv[1]),
            "gain": (1 - mean / NOTE_001_LOG_RMSE) if math.isfinite(mean) else math.nan,
            "time_s": _float(fit.get("time_s")), "chart": None,
            "comparable": str(fit.get("metric", "")).replace("-", "_") in ("log_rmse", "rmse_log")}
    if view["comparable"] and scores:
        view["chart"] = _fit_chart(view["models"], best)
    return view


def _fit_chart(models: list[tuple[str, float]], best: str | None) -> str:
    bars = [(name, v, "#2ca02c" if name == best else "#9ecae1") for name, v in models]
    bars.append(("note 001's pipeline", NOTE_001_LOG_RMSE, "#bbbbbb"))
    with rc_context():
        fig = figure(5.2, 0.5 + 0.32 * len(bars), left=0.3, right=0.96)
        ax = fig.add_subplot(1, 1, 1)
        ypos = list(range(len(bars)))[::-1]
        ax.barh(ypos, [b[1] for b in bars], color=[b[2] for b in bars], edgecolor="#555555", zorder=2)
        for y, (_, v, _) in zip(ypos, bars):
            ax.annotate(f"{v:.4f}", (v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(ypos)
        ax.set_yticklabels([short(b[0], 30).replace("$", r"\$") for b in bars])
        ax.set_xlim(0, NOTE_001_LOG_RMSE * 1.18)
        ax.set_xlabel("5-fold log-RMSE (lower is better)")
        ax.grid(axis="y", visible=False)
        return png(fig, dpi=150)


def render_dashboard(out: Path, rows: list[dict[str, Any]], fit: dict[str, Any] | None = None, *,
                     seconds: float | None = None) -> str:
    from trainmedic.report.html import template_env

    cases = case_rows(rows, out)
    faults = [c for c in cases if not c["control"]]
    healable = [r for r in rows if not r.get("control") and r.get("healable")]
    recovered = [r for r in healable if _float(r.get("healthy_metric")) > 0 and
                 _float(r.get("heal_metric")) / _float(r.get("healthy_metric")) <= HEAL_TOLERANCE]
    summary = {
        "faults": len(faults), "detected": sum(c["verdict"][0] == "ok" for c in faults),
        "controls": len(cases) - len(faults),
        "false_alarms": sum(len(c["false_alarms"]) for c in cases),
        "healthy_runs": sum(2 if c["control"] else 1 for c in cases),
        "healable": len(healable), "recovered": len(recovered),
    }
    fit_page = Path("house-prices") / "report.html"
    return template_env().get_template("index.html.j2").render(
        title="trainmedic demo", directory=str(out), cases=cases, summary=summary, fit=fit_view(fit),
        fit_report=fit_page.as_posix() if (out / fit_page).is_file() else None,
        seconds=seconds, tolerance=HEAL_TOLERANCE,
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def write_dashboard(out: str | os.PathLike[str], rows: list[dict[str, Any]], fit: dict[str, Any] | None = None,
                    *, seconds: float | None = None) -> Path:
    """Write ``out/index.html``; returns its path."""
    out = Path(out)
    index = out / "index.html"
    atomic_write_text(index, render_dashboard(out, rows, fit, seconds=seconds))
    return index

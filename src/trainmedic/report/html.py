"""The self-contained HTML report: ``report.html`` beside ``events.jsonl``, ``findings.json``, ``cv.json``.

One page, no network: no CDN, the plots embedded as base64 PNG (:mod:`trainmedic.report.figures`), one
inline script of our own for the hover readout (:mod:`trainmedic.report.hover`), a Content-Security-Policy
that forbids any fetch and any other script. Every string from the user (messages, module and column
names, model names) goes through Jinja2's autoescape; text drawn into the plots is kept out of mathtext.

What it shows, depending on what the directory holds:

* a training run (``events.jsonl`` from ``Medic.save_report`` or ``trainmedic run``): what was trained
  and how (the meta line's ``run``: model size, optimizer and its settings, torch and device, wall time,
  speed), the loss with the validation curve and every event marked, the learning rate, the gradient norm
  and a per-layer heatmap of gradient norms over time, sampled activation statistics where a collector
  wrote them, the epochs, the actions, the quarantined samples; each optimizer of a multi-optimizer run;
* a ``trainmedic fit`` output (``cv.json``): the per-fold table and the model comparison;
* the findings (``findings.json``) with the explanation ``trainmedic explain`` prints.

``trainmedic report DIR`` rebuilds it from the files. A truncated or partly corrupt ``events.jsonl``
gives a report of what is readable, with a note saying what was skipped.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from trainmedic.findings import atomic_write_text
from trainmedic.report.cv import fig_models, fit_tables, fmt
from trainmedic.report.events import RunData, engines, for_engine, kept_epoch_means, num, read_events, step_of
from trainmedic.report.figures import RUN_FIGURES, SEVERITY_COLOR, Plot, rc_context, short
from trainmedic.report.hover import HOVER_CSS, HOVER_JS, csp_source

TEMPLATES = Path(__file__).with_name("templates")
MAX_EVENT_ROWS = 1000

__all__ = ["ReportData", "RunData", "load_report_data", "read_events", "render", "render_report", "write_report"]


# ----------------------------------------------------------------------------------------------------
# reading the output directory
# ----------------------------------------------------------------------------------------------------
@dataclass
class ReportData:
    directory: Path
    run: RunData | None = None
    cv: dict[str, Any] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [k for k, present in (("run", self.run is not None), ("fit", self.cv is not None)) if present]


def _read_json(path: Path, notes: list[str], what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({type(exc).__name__}: {short(str(exc))}); "
                     f"the report shows {what} without it.")
        return None


def load_report_data(out_dir: str | os.PathLike[str], *, cv: dict[str, Any] | None = None,
                     findings: list[Any] | None = None) -> ReportData:
    """Read what ``out_dir`` holds. ``cv`` / ``findings`` given here take the place of the files."""
    out = Path(out_dir)
    data = ReportData(directory=out)
    events = out / "events.jsonl"
    if events.exists():
        try:
            data.run = read_events(events)
        except OSError as exc:
            data.notes.append(f"events.jsonl could not be read ({exc}); the curves are missing.")
        else:
            _event_notes(data.run, data.notes)
    if cv is not None:
        data.cv = dict(cv)
    elif (out / "cv.json").exists():
        doc = _read_json(out / "cv.json", data.notes, "the rest")
        if isinstance(doc, dict):
            data.cv = doc
        elif doc is not None:
            data.notes.append("cv.json does not hold a JSON object; the cross-validation section is missing.")
    if findings is not None:
        data.findings = [f.to_dict() if hasattr(f, "to_dict") else dict(f) for f in findings]
    elif (out / "findings.json").exists():
        doc = _read_json(out / "findings.json", data.notes, "the findings recorded in events.jsonl")
        if isinstance(doc, dict) and isinstance(doc.get("findings"), list):
            data.findings = [f for f in doc["findings"] if isinstance(f, dict) and "code" in f]
        elif doc is not None:
            data.notes.append("findings.json has no 'findings' list; using the findings in events.jsonl.")
    if not data.findings and data.run is not None and data.run.findings:
        data.findings = [{k: v for k, v in f.items() if k != "type"} for f in data.run.findings]
    return data


def _event_notes(run: RunData, notes: list[str]) -> None:
    if run.truncated:
        notes.append("events.jsonl ends in the middle of a line (the run was probably interrupted while "
                     "writing it); the incomplete last line was skipped.")
    if run.bad_lines:
        shown = ", ".join(str(n) for n in run.bad_lines[:10]) + (", ..." if len(run.bad_lines) > 10 else "")
        notes.append(f"{len(run.bad_lines)} of {run.lines} lines of events.jsonl could not be read "
                     f"(line {shown}) and were skipped; the report shows the rest.")
    if run.meta is None and run.lines:
        notes.append("events.jsonl has no meta line: run settings and layer names are unknown.")
    dropped = (run.meta or {}).get("events_dropped") or 0
    if isinstance(dropped, int) and dropped > 0:
        notes.append(f"the {dropped} earliest events were dropped during the run (the event buffer is bounded); "
                     "curves are complete, the event list starts later.")


def _detail(ev: dict[str, Any], skip: tuple[str, ...] = ("type", "step", "epoch", "action", "reason", "engine")) -> str:
    rest = {k: v for k, v in ev.items() if k not in skip}
    if not rest:
        return ""
    parts = []
    for k, v in rest.items():
        if isinstance(v, float) or (isinstance(v, str) and v in ("nan", "inf", "-inf")):
            parts.append(f"{k}={fmt(v)}")
        elif isinstance(v, (dict, list)):
            parts.append(f"{k}={short(json.dumps(v, default=str), 200)}")
        else:
            parts.append(f"{k}={short(str(v), 120)}")
    return ", ".join(parts)

# ----------------------------------------------------------------------------------------------------
# what was trained, and how: the meta line's "run" object
# ----------------------------------------------------------------------------------------------------
# Optimizer settings that say how PyTorch runs the step, not what it computes: left out when off.
_IMPLEMENTATION_FLAGS = ("foreach", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def _count(v: Any) -> str:
    x = num(v)
    if not math.isfinite(x):
        return short(v, 40)
    n = int(x)
    for size, unit in ((1e9, "G"), (1e6, "M")):
        if n >= size:
            return f"{n:,} ({n / size:.3g} {unit})"
    return f"{n:,}"


def _duration(v: Any) -> str:
    s = num(v)
    if not math.isfinite(s) or s < 0:
        return short(v, 40)
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{int(s // 60)} min {s % 60:02.0f} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    if isinstance(v, float):
        return f"{v:.4g}"
    return short(v, 60)


def _optimizer(opt: Any) -> str:
    if not isinstance(opt, dict):
        return short(opt, 120) if opt else ""
    name = short(opt.get("name") or "optimizer", 60)
    hp = opt.get("hyperparameters")
    if not isinstance(hp, dict) or not hp:
        return name
    first = [k for k in ("lr", "momentum", "betas", "weight_decay", "eps") if k in hp]
    keys = first + sorted(k for k in hp if k not in first)
    shown = [f"{k}={_value(hp[k])}" for k in keys
             if hp[k] is not None and not (k in _IMPLEMENTATION_FLAGS and hp[k] in (False, None))]
    return f"{name}({', '.join(shown)})"


def run_rows(run: Any) -> list[tuple[str, str]]:
    """The ``run`` object of the meta line as (label, text) rows; keys that are missing are left out.

    ``{"model_parameters": int, "trainable_parameters": int, "optimizer": {"name": str, "hyperparameters":
    {...}}, "torch": str, "device": str, "wall_time_s": float, "steps_per_s": float}``
    """
    if not isinstance(run, dict):
        return []
    rows = []
    if run.get("model_parameters") is not None:
        text = f"{_count(run['model_parameters'])} parameters"
        trainable = run.get("trainable_parameters")
        if trainable is not None and num(trainable) != num(run["model_parameters"]):
            text += f", {_count(trainable)} trainable"
        rows.append(("model", text))
    elif run.get("trainable_parameters") is not None:
        rows.append(("model", f"{_count(run['trainable_parameters'])} trainable parameters"))
    if run.get("optimizer"):
        rows.append(("optimizer", _optimizer(run["optimizer"])))
    platform = ", ".join(x for x in (f"torch {short(run['torch'], 40)}" if run.get("torch") else "",
                                     short(run["device"], 40) if run.get("device") else "") if x)
    if platform:
        rows.append(("torch, device", platform))
    speed = []
    if run.get("wall_time_s") is not None:
        speed.append(_duration(run["wall_time_s"]))
    sps = num(run.get("steps_per_s"))
    if math.isfinite(sps):
        speed.append(f"{sps:.3g} steps/s")
    if speed:
        rows.append(("wall time", ", ".join(speed)))
    return rows


def run_info(meta: dict[str, Any], run: RunData | None) -> dict[str, Any]:
    """The header's run section: the run's own rows, or one column per optimizer of a multi-optimizer run."""
    general = []
    for key, label in (("mode", "mode"), ("steps", "steps"), ("epochs", "epochs"), ("started", "started"),
                       ("trainmedic", "trainmedic")):
        if meta.get(key) is not None and not isinstance(meta[key], (dict, list)):
            general.append((label, short(meta[key], 80)))
    if meta.get("script"):
        argv = meta.get("argv") if isinstance(meta.get("argv"), list) else []
        general.append(("script", short(" ".join([str(meta["script"]), *map(str, argv)]), 200)))
    engs = engines(run) if run is not None else []
    columns = []
    for e in engs:
        rows = run_rows(e.meta.get("run"))
        if e.meta.get("steps") is not None:
            rows = [("steps", short(e.meta["steps"], 20)), *rows]
        columns.append((e.name, rows))
    if columns and any(rows for _, rows in columns):
        labels = list(dict.fromkeys(label for _, rows in columns for label, _ in rows))
        table = [(label, [dict(rows).get(label, "") for _, rows in columns]) for label in labels]
        return {"general": general, "rows": [], "engines": [name for name, _ in columns], "table": table}
    return {"general": general, "rows": run_rows(meta.get("run")), "engines": [], "table": []}


def _engine_of_finding(evidence: dict[str, Any]) -> str:
    """Which optimizer a finding of a multi-optimizer run belongs to (``evidence.optimizer`` / ``model``)."""
    opt, model = evidence.get("optimizer"), evidence.get("model")
    if opt is None and model is None:
        return ""
    if model is not None and opt is not None:
        return f"{short(model, 40)} (optimizer {short(opt, 10)})"
    return short(model, 40) if model is not None else f"optimizer {short(opt, 10)}"


# ----------------------------------------------------------------------------------------------------
# tables for the template
# ----------------------------------------------------------------------------------------------------
def _finding_rows(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from trainmedic.rules.registry import get_rule

    rows = []
    for f in findings:
        code = str(f.get("code", "?"))
        try:
            rule = get_rule(code)
            explanation = rule.render()
            name = f.get("name") or rule.name
            severity = f.get("severity") or rule.severity
        except KeyError:
            explanation = f"{code} is not a code this version of trainmedic knows."
            name = f.get("name") or ""
            severity = f.get("severity") or "info"
        evidence = f.get("evidence") if isinstance(f.get("evidence"), dict) else {}
        rows.append({
            "where": _engine_of_finding(evidence),
            "code": code, "name": name, "severity": severity if severity in SEVERITY_COLOR else "info",
            "step": f.get("step"), "epoch": f.get("epoch"), "message": str(f.get("message", "")),
            "action": f.get("action"), "count": evidence.get("count"),
            "evidence": json.dumps(evidence, indent=2, default=str, ensure_ascii=False) if evidence else "",
            "explanation": explanation,
        })
    return rows


def _epoch_rows(run: RunData) -> list[dict[str, Any]]:
    """The epochs, with the training loss of the steps kept where a rollback undid some (``kept``)."""
    kept: dict[tuple[Any, float], float] = {}
    parts = [(e.key, for_engine(run, e)) for e in engines(run)] or [(None, run)]
    for key, part in parts:
        means, changed = kept_epoch_means(part)
        if changed:
            kept.update({(key, step): value for step, value in means})
    rows = []
    for e in run.epochs:
        value = kept.get((e.get("engine"), step_of(e)))
        if value is not None and math.isclose(value, num(e.get("train_loss")), rel_tol=1e-9):
            value = None
        rows.append({**e, "kept": value})
    return rows


def _quarantine_rows(run: RunData | None, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    if run is not None:
        for a in run.actions:
            if a.get("action") == "quarantine":
                rows.append({"step": a.get("step"), "source": f"quarantine action ({a.get('reason', '')})",
                             "detail": _detail(a)})
    for f in findings:
        if f.get("code") == "TM313":
            ev = f.get("evidence") if isinstance(f.get("evidence"), dict) else {}
            rows.append({"step": f.get("step"), "source": "TM313 dirty-samples", "detail": _detail(ev, ())})
    return rows


# ----------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------
def template_env() -> Environment:
    """The Jinja2 environment of the report templates (autoescape on: every user string is escaped)."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def _plots(data: ReportData) -> list[Plot]:
    makers = []
    if data.run is not None:
        makers += [(key, fn, data.run) for key, fn in RUN_FIGURES]
    if data.cv is not None:
        makers.append(("models", fig_models, data.cv))
    plots = []
    with rc_context():
        for key, fn, arg in makers:
            try:
                p = fn(arg)
            except Exception as exc:  # one bad plot must not cost the whole report
                data.notes.append(f"the {key} plot could not be drawn ({type(exc).__name__}: {short(str(exc))}).")
                continue
            if p is not None:
                plots.append(p)
    return plots


def render_report(out_dir: str | os.PathLike[str], *, cv: dict[str, Any] | None = None,
                  findings: list[Any] | None = None, title: str | None = None) -> str:
    """The HTML of the report of ``out_dir`` (files read from there unless ``cv`` / ``findings`` are given)."""
    data = load_report_data(out_dir, cv=cv, findings=findings)
    return render(data, title=title)


def render(data: ReportData, *, title: str | None = None) -> str:
    plots = _plots(data)
    run = data.run
    meta = (run.meta if run else None) or {}
    try:
        info = run_info(meta, run)
    except Exception as exc:  # metadata from an unknown writer: the report goes on without it
        data.notes.append(f"the run's metadata could not be shown ({type(exc).__name__}: {short(str(exc))}).")
        info = {"general": [], "rows": [], "engines": [], "table": []}
    sev = Counter(f.get("severity", "info") for f in data.findings)
    actions = run.actions if run else []
    has_epoch_engine = any(e.get("engine") is not None for e in (run.epochs if run else []))
    ctx = {
        "title": title or f"trainmedic report: {data.directory.name or data.directory}",
        "directory": str(data.directory),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kinds": data.kinds,
        "notes": data.notes,
        "plots": {p.key: p for p in plots},
        "findings": _finding_rows(data.findings),
        "severity_counts": [(s, sev.get(s, 0)) for s in ("error", "warning", "info")],
        "meta": meta,
        "info": info,
        "thresholds": json.dumps(meta.get("thresholds"), indent=1) if meta.get("thresholds") else "",
        "action_counts": sorted(Counter(str(a.get("action")) for a in actions).items()),
        "actions": [{"step": a.get("step"), "epoch": a.get("epoch"), "action": a.get("action"),
                     "reason": a.get("reason"), "engine": a.get("engine"), "detail": _detail(a)}
                    for a in actions[:MAX_EVENT_ROWS]],
        "actions_more": max(0, len(actions) - MAX_EVENT_ROWS),
        "actions_have_engine": any(a.get("engine") is not None for a in actions),
        "epochs": _epoch_rows(run) if run else [],
        "epochs_have_engine": has_epoch_engine,
        "epochs_kept": bool(run and any(e["kept"] is not None for e in _epoch_rows(run))),
        "quarantine": _quarantine_rows(run, data.findings),
        "run_empty": bool(run and run.empty),
        "fit": fit_tables(data.cv) if data.cv is not None else None,
        "files": sorted(p.name for p in data.directory.iterdir() if p.is_file()) if data.directory.is_dir() else [],
    }
    ctx.update(hover_js=Markup(HOVER_JS), hover_css=Markup(HOVER_CSS), script_hash=Markup(csp_source()))
    return template_env().get_template("report.html.j2").render(**ctx)


def write_report(out_dir: str | os.PathLike[str], *, cv: dict[str, Any] | None = None,
                 findings: list[Any] | None = None, title: str | None = None) -> Path:
    """Write ``out_dir/report.html`` from what the directory holds (a run, a fit, findings); returns its path.

    ``fit`` calls it after writing ``cv.json`` and ``findings.json`` (or passes ``cv=`` / ``findings=``).
    """
    out = Path(out_dir)
    html = render_report(out, cv=cv, findings=findings, title=title)
    atomic_write_text(out / "report.html", html)
    return out / "report.html"

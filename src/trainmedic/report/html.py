"""The self-contained HTML report: ``report.html`` beside ``events.jsonl``, ``findings.json``, ``cv.json``.

One page, no network: no scripts, no CDN, the plots embedded as base64 PNG (matplotlib, Agg, no pyplot
state touched), a Content-Security-Policy that forbids any fetch. Every string from the user (messages,
module and column names, model names) goes through Jinja2's autoescape; text drawn into the plots is
kept out of matplotlib's mathtext.

What it shows, depending on what the directory holds:

* a training run (``events.jsonl`` from ``Medic.save_report`` or ``trainmedic run``): the loss with the
  validation curve and every event marked (skip, clip, rollback, lr change, quarantine, stop,
  restore-best, resume, findings), the learning rate, the gradient norm and a per-layer heatmap of
  gradient norms over time, sampled activation statistics (``activation_sample`` events) where a
  collector wrote them, the epochs, the actions, the quarantined samples;
* a ``trainmedic fit`` output (``cv.json``): the per-fold table and the model comparison;
* the findings (``findings.json``) with the explanation ``trainmedic explain`` prints.

``trainmedic report DIR`` rebuilds it from the files. A truncated or partly corrupt ``events.jsonl``
gives a report of what is readable, with a note saying what was skipped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader

from trainmedic.findings import atomic_write_text

TEMPLATES = Path(__file__).with_name("templates")
MAX_EVENT_ROWS = 1000

# How each action is drawn on the curves: colour, marker style (line = vertical line), legend label.
EVENT_STYLE: dict[str, tuple[str, str, str]] = {
    "skip-step": ("#d62728", "x", "step skipped"),
    "clip": ("#ff7f0e", "v", "gradient clipped"),
    "rollback": ("#9467bd", "line", "rollback"),
    "lr-change": ("#1f77b4", "line", "lr change"),
    "quarantine": ("#8c564b", "line", "quarantine"),
    "stop": ("#000000", "line", "early stop"),
    "restore-best": ("#2ca02c", "line", "best weights restored"),
    "resume": ("#7f7f7f", "line", "resumed from checkpoint"),
    "zero-grad": ("#17becf", "line", "zero-grad enabled"),
}
SEVERITY_COLOR = {"error": "#d62728", "warning": "#e6a100", "info": "#1f77b4"}
_LINESTYLE = {"lr-change": "--", "quarantine": ":", "resume": "-.", "zero-grad": ":"}


# ----------------------------------------------------------------------------------------------------
# reading the output directory
# ----------------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """What ``events.jsonl`` holds, split by type, plus what could not be read."""

    meta: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    layer_samples: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    bad_lines: list[int] = field(default_factory=list)
    truncated: bool = False

    @property
    def empty(self) -> bool:
        return not (self.samples or self.epochs or self.actions or self.findings or self.layer_samples)


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


def read_events(path: str | os.PathLike[str]) -> RunData:
    """Parse ``events.jsonl`` line by line; unreadable lines are counted and skipped, never fatal."""
    run = RunData()
    with open(path, "rb") as fh:
        raw = fh.read()
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    ends_cleanly = text.endswith("\n") or not text
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        run.lines += 1
        try:
            ev = json.loads(line)
        except ValueError:
            if i == len(lines) and not ends_cleanly:
                run.truncated = True
            else:
                run.bad_lines.append(i)
            continue
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            run.bad_lines.append(i)
            continue
        kind = ev["type"]
        if kind == "meta" and run.meta is None:
            run.meta = ev
        elif kind == "sample":
            run.samples.append(ev)
        elif kind == "layer_sample":
            run.layer_samples.append(ev)
        elif kind == "epoch":
            run.epochs.append(ev)
        elif kind == "action":
            run.actions.append(ev)
        elif kind == "finding":
            run.findings.append(ev)
        else:
            run.other.append(ev)
    return run


def _read_json(path: Path, notes: list[str], what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({type(exc).__name__}: {_short(str(exc))}); "
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


# ----------------------------------------------------------------------------------------------------
# numbers
# ----------------------------------------------------------------------------------------------------
def _num(v: Any) -> float:
    """A float from a JSON value (jsonable writes NaN/Inf as strings); anything else is NaN."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def _step(ev: dict[str, Any]) -> float:
    return _num(ev.get("step"))


def _short(s: str, n: int = 160) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    x = _num(v)
    if isinstance(v, str) and math.isnan(x) and v.lower() != "nan":
        return v
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return f"{x:.4g}"


def _detail(ev: dict[str, Any], skip: tuple[str, ...] = ("type", "step", "epoch", "action", "reason")) -> str:
    rest = {k: v for k, v in ev.items() if k not in skip}
    if not rest:
        return ""
    parts = []
    for k, v in rest.items():
        if isinstance(v, float) or (isinstance(v, str) and v in ("nan", "inf", "-inf")):
            parts.append(f"{k}={_fmt(v)}")
        elif isinstance(v, (dict, list)):
            parts.append(f"{k}={_short(json.dumps(v, default=str), 200)}")
        else:
            parts.append(f"{k}={_short(str(v), 120)}")
    return ", ".join(parts)


def _text(s: Any) -> str:
    """Text for matplotlib: no mathtext ($...$) from user strings."""
    return str(s).replace("$", r"\$")


# ----------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------
_RC = {"text.usetex": False, "font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
       "figure.dpi": 100, "savefig.dpi": 100, "axes.spines.top": False, "axes.spines.right": False}


def _figure(width: float, height: float, *, right: float = 0.80, left: float = 0.07):
    """A figure with fixed margins (the legend lives in the right margin): one draw, no tight bbox pass."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    bottom = min(0.35, 0.5 / height)
    top = 1 - min(0.25, 0.3 / height)
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _log_axis(ax, axis: str = "y") -> None:
    """Log scale with plain tick labels (the default ones go through mathtext, which is slow)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


@dataclass
class Plot:
    key: str
    title: str
    png: str  # base64
    caption: str = ""


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        x = _step(r)
        if math.isfinite(x):
            xs.append(x)
            ys.append(_num(r.get(key)))
    return xs, ys


def _use_log(values: list[float], ratio: float = 50.0) -> bool:
    pos = [v for v in values if math.isfinite(v)]
    return bool(pos) and min(pos) > 0 and max(pos) / min(pos) > ratio


def _epoch_lines(ax, run: RunData) -> None:
    steps = [_step(e) for e in run.epochs]
    steps = [s for s in steps if math.isfinite(s)]
    if 0 < len(steps) <= 60:
        ax.vlines(steps, 0, 1, transform=ax.get_xaxis_transform(), colors="#bbbbbb", linestyles=":",
                  linewidth=0.8, zorder=0)


def _mark_events(ax, run: RunData, xs: list[float], ys: list[float], *, findings: bool = True) -> list[Any]:
    """Draw every action (and, optionally, every finding) on ``ax``; returns legend handles."""
    import numpy as np
    from matplotlib.lines import Line2D

    fin = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    fx = np.array([p[0] for p in fin])
    fy = np.array([p[1] for p in fin])

    def y_at(steps: list[float]) -> tuple[list[float], list[bool]]:
        if len(fx) == 0:
            return [1.0] * len(steps), [False] * len(steps)
        return list(np.interp(steps, fx, fy)), [True] * len(steps)

    handles = []
    counts = Counter(a.get("action") for a in run.actions)
    top = ax.get_xaxis_transform()
    for action, n in counts.items():
        color, style, label = EVENT_STYLE.get(str(action), ("#555555", "line", _text(action)))
        evs = [a for a in run.actions if a.get("action") == action and math.isfinite(_step(a))]
        if not evs:
            continue
        steps = [_step(a) for a in evs]
        if style == "line":
            ax.vlines(steps, 0, 1, transform=top, colors=color, linestyles=_LINESTYLE.get(action, "-"),
                      linewidth=1.2, alpha=0.85, zorder=3)
            if action == "rollback":
                for a in evs:
                    to = _num(a.get("to_step"))
                    if math.isfinite(to):
                        ax.axvspan(to, _step(a), color=color, alpha=0.07, zorder=0, linewidth=0)
            handles.append(Line2D([], [], color=color, linestyle=_LINESTYLE.get(action, "-"),
                                  label=f"{label} ({n})"))
        else:
            yv, known = y_at(steps)
            inside = [(s, y) for s, y, k in zip(steps, yv, known) if k]
            outside = [s for s, k in zip(steps, known) if not k]
            if inside:
                ax.scatter([p[0] for p in inside], [p[1] for p in inside], marker=style, color=color, s=36,
                           zorder=4, linewidths=1.5)
            if outside:
                ax.scatter(outside, [0.97] * len(outside), transform=top, marker=style, color=color, s=36,
                           zorder=4, linewidths=1.5)
            handles.append(Line2D([], [], color=color, marker=style, linestyle="none", label=f"{label} ({n})"))
    if findings and run.findings:
        by_sev: dict[str, list[float]] = {}
        for f in run.findings:
            s = _step(f)
            if math.isfinite(s):
                by_sev.setdefault(str(f.get("severity", "info")), []).append(s)
        for sev, steps in by_sev.items():
            color = SEVERITY_COLOR.get(sev, "#555555")
            ax.scatter(steps, [1.0] * len(steps), transform=top, marker="v", color=color, s=42, zorder=5,
                       clip_on=False, edgecolors="white", linewidths=0.5)
            handles.append(Line2D([], [], color=color, marker="v", linestyle="none",
                                  label=f"{sev} finding ({len(steps)})"))
        lo, hi = ax.get_xlim()
        near = (hi - lo) / 25 if hi > lo else 1.0
        last, level = -math.inf, 0
        for f in sorted(run.findings[:12], key=_step):
            s = _step(f)
            if math.isfinite(s):
                level = (level + 1) % 3 if s - last < near else 0  # stagger labels of close findings
                last = s
                ax.annotate(_text(f.get("code", "")), (s, 1.0), xycoords=top, xytext=(2, 3 + 8 * level),
                            textcoords="offset points", fontsize=7, color="#333333", annotation_clip=False)
    return handles


def _legend(ax, handles: list[Any], extra: bool = True) -> None:
    base, labels = ax.get_legend_handles_labels()
    allh = list(base) + list(handles)
    if allh:
        ax.legend(handles=allh, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0)


def fig_loss(run: RunData) -> Plot | None:
    xs, ys = _series(run.samples, "loss")
    ep_x = [_step(e) for e in run.epochs]
    val = [_num(e.get("val_loss")) for e in run.epochs]
    train = [_num(e.get("train_loss")) for e in run.epochs]
    has_val = any(math.isfinite(v) for v in val)
    if not xs and not run.epochs:
        return None
    fig = _figure(10, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    if finite:
        ax.plot([p[0] for p in finite], [p[1] for p in finite], color="#1f77b4", linewidth=1.0,
                label="training loss (per step)")
    bad = [x for x, y in zip(xs, ys) if not math.isfinite(y)]
    if bad:
        ax.scatter(bad, [0.03] * len(bad), transform=ax.get_xaxis_transform(), marker="|", color="#d62728",
                   s=60, label=f"non-finite loss ({len(bad)})", zorder=4)
    tr = [(x, y) for x, y in zip(ep_x, train) if math.isfinite(x) and math.isfinite(y)]
    if tr:
        ax.plot([p[0] for p in tr], [p[1] for p in tr], color="#444444", marker="o", markersize=3,
                linewidth=1.0, label="training loss (epoch mean)")
    if has_val:
        vv = [(x, y) for x, y in zip(ep_x, val) if math.isfinite(x) and math.isfinite(y)]
        ax.plot([p[0] for p in vv], [p[1] for p in vv], color="#e377c2", marker="s", markersize=4,
                linewidth=1.6, label="validation loss")
    values = [p[1] for p in finite] + [p[1] for p in tr] + ([y for y in val if math.isfinite(y)] if has_val else [])
    if _use_log(values):
        _log_axis(ax)
    _epoch_lines(ax, run)
    handles = _mark_events(ax, run, xs, ys)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    _legend(ax, handles)
    png = _png(fig)
    return Plot("loss", "Loss and validation, with every event", png,
                "Events: vertical lines for rollbacks (shaded: the steps undone), lr changes, quarantines, "
                "early stop, restored weights and resumes; markers for skipped and clipped steps; triangles "
                "on the top edge for findings. Dotted grey lines: epoch ends.")


def fig_metric(run: RunData) -> Plot | None:
    pts = [(_step(e), _num(e.get("val_metric"))) for e in run.epochs]
    pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return None
    fig = _figure(10, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#2ca02c", marker="o", markersize=4,
            label="validation metric")
    lines = [a for a in run.actions if EVENT_STYLE.get(str(a.get("action")), ("", "line"))[1] == "line"]
    handles = _mark_events(ax, RunData(actions=lines), [p[0] for p in pts], [p[1] for p in pts], findings=False)
    ax.set_xlabel("step")
    ax.set_ylabel("metric")
    _legend(ax, handles)
    return Plot("metric", "Validation metric", _png(fig))


def fig_lr(run: RunData) -> Plot | None:
    xs, ys = _series(run.samples, "lr")
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    if not pts:
        pts = [(_step(e), _num(e.get("lr"))) for e in run.epochs]
        pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if not pts:
        return None
    fig = _figure(10, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="#1f77b4", linewidth=1.2,
            label="learning rate")
    if _use_log([p[1] for p in pts], 10.0):
        _log_axis(ax)
    sub = RunData(actions=[a for a in run.actions if a.get("action") in ("lr-change", "rollback", "resume")])
    handles = _mark_events(ax, sub, [p[0] for p in pts], [p[1] for p in pts], findings=False)
    _epoch_lines(ax, run)
    ax.set_xlabel("step")
    ax.set_ylabel("lr")
    _legend(ax, handles)
    return Plot("lr", "Learning rate", _png(fig))


def fig_grad(run: RunData) -> Plot | None:
    xs, ys = _series(run.samples, "grad_norm")
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and y > 0]
    if not pts:
        return None
    fig = _figure(10, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#555555", linewidth=0.9,
            label="global gradient norm")
    clips = [a for a in run.actions if a.get("action") == "clip" and math.isfinite(_num(a.get("clipped_to")))]
    if clips:
        ax.scatter([_step(a) for a in clips], [_num(a.get("clipped_to")) for a in clips], marker="_",
                   color="#2ca02c", s=80, zorder=5, label="clipped to")
    _log_axis(ax)
    sub = RunData(actions=[a for a in run.actions if a.get("action") in ("clip", "skip-step", "rollback")])
    handles = _mark_events(ax, sub, xs, ys, findings=False)
    _epoch_lines(ax, run)
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    _legend(ax, handles)
    return Plot("grad", "Gradient norm (global)", _png(fig))


def fig_heatmap(run: RunData) -> Plot | None:
    import numpy as np

    rows = [r for r in run.layer_samples if isinstance(r.get("norms"), list) and math.isfinite(_step(r))]
    if not rows:
        return None
    n = max(len(r["norms"]) for r in rows)
    if n == 0:
        return None
    names = list((run.meta or {}).get("layers") or [])
    if len(names) != n:
        names = [f"param {i}" for i in range(n)]
    steps = np.array([_step(r) for r in rows])
    mat = np.full((n, len(rows)), np.nan)
    nonfinite = np.zeros((n, len(rows)), dtype=bool)
    for j, r in enumerate(rows):
        for i, raw in enumerate(r["norms"]):
            v = _num(raw)
            mat[i, j] = v
            nonfinite[i, j] = raw is not None and not math.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        logm = np.where(np.isfinite(mat) & (mat > 0), np.log10(np.where(mat > 0, mat, 1.0)), np.nan)
    height = min(10.0, max(2.6, 1.0 + 0.22 * n))
    width_names = max((len(_short(x, 48)) for x in names), default=8)
    fig = _figure(10, height, left=min(0.4, 0.03 + 0.0065 * width_names), right=0.97)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap()
    x0, x1 = float(steps.min()), float(steps.max())
    if x1 == x0:
        x1 = x0 + 1
    half = (x1 - x0) / max(1, len(rows) - 1) / 2
    extent = (x0 - half, x1 + half, n - 0.5, -0.5)
    masked = np.ma.masked_invalid(logm)
    im = ax.imshow(masked, aspect="auto", interpolation="nearest", cmap=cmap, extent=extent)
    if nonfinite.any():
        overlay = np.zeros((n, len(rows), 4))
        overlay[nonfinite] = (0.84, 0.15, 0.16, 1.0)
        ax.imshow(overlay, aspect="auto", interpolation="nearest", extent=extent)
    k = max(1, math.ceil(n / 40))
    ticks = list(range(0, n, k))
    ax.set_yticks(ticks)
    ax.set_yticklabels([_text(_short(names[i], 48)) for i in ticks], fontsize=7)
    ax.grid(False)
    ax.set_xlabel("step")
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("log10 gradient norm")
    caption = "One row per parameter tensor, first layer at the top. Grey: no gradient; red: NaN/Inf."
    return Plot("heatmap", "Gradient norm per layer over time", _png(fig), caption)


def fig_activations(run: RunData) -> Plot | None:
    """``activation_sample`` events: ``{"type": "activation_sample", "step": int, "layers": {name: {stat: x}}}``."""
    rows = [e for e in run.other if e.get("type") == "activation_sample" and isinstance(e.get("layers"), dict)
            and math.isfinite(_step(e))]
    if not rows:
        return None
    stats = []
    for r in rows:
        for v in r["layers"].values():
            if isinstance(v, dict):
                stats += [k for k in v if k not in stats and isinstance(v[k], (int, float))]
    stats = [k for k in ("std", "mean", "dead", "saturated") if k in stats] + \
        [k for k in stats if k not in ("std", "mean", "dead", "saturated")]
    stats = stats[:3]
    if not stats:
        return None
    names = list(dict.fromkeys(n for r in rows for n in r["layers"]))[:12]
    fig = _figure(10, 2.3 * len(stats) + 0.4)
    for i, stat in enumerate(stats):
        ax = fig.add_subplot(len(stats), 1, i + 1)
        for name in names:
            pts = [(_step(r), _num((r["layers"].get(name) or {}).get(stat))) for r in rows]
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1,
                        label=_text(_short(name, 30)))
        ax.set_ylabel(_text(stat))
        if i == 0:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        if i == len(stats) - 1:
            ax.set_xlabel("step")
    fig.subplots_adjust(hspace=0.35)
    return Plot("activations", "Sampled activation statistics", _png(fig),
                "Per layer, at the steps where activations were sampled (at most 12 layers shown).")


def _cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")


def _lower_is_better(cv: dict[str, Any]) -> bool:
    if "greater_is_better" in cv:
        return not bool(cv["greater_is_better"])
    metric = str(cv.get("metric", "")).lower()
    return not any(k in metric for k in ("acc", "auc", "r2", "f1", "precision", "recall"))


def fig_models(cv: dict[str, Any]) -> Plot | None:
    models = _models(cv)
    if not models:
        return None
    lower = _lower_is_better(cv)
    order = sorted(models, key=lambda m: models[m]["mean"], reverse=not lower)
    width_names = max((len(_short(m, 40)) for m in order), default=8)
    fig = _figure(9, max(1.8, 0.9 + 0.42 * len(order)), left=min(0.4, 0.03 + 0.009 * width_names), right=0.97)
    ax = fig.add_subplot(1, 1, 1)
    best = cv.get("best_model") if cv.get("best_model") in models else order[0]
    ypos = list(range(len(order)))[::-1]
    means = [models[m]["mean"] for m in order]
    stds = [models[m]["std"] for m in order]
    colors = ["#2ca02c" if m == best else "#9ecae1" for m in order]
    ax.barh(ypos, means, xerr=stds, color=colors, edgecolor="#555555", capsize=3, zorder=2)
    for y, m in zip(ypos, order):
        folds = [v for v in models[m]["folds"] if math.isfinite(v)]
        ax.scatter(folds, [y] * len(folds), color="#333333", s=10, zorder=3)
    ax.set_yticks(ypos)
    ax.set_yticklabels([_text(_short(m, 40)) for m in order])
    allv = [v for m in order for v in models[m]["folds"] + [models[m]["mean"]] if math.isfinite(v)]
    if allv:
        lo, hi = min(allv), max(allv)
        pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
        ax.set_xlim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    ax.set_xlabel(_text(f"{cv.get('metric', 'score')} ({'lower' if lower else 'higher'} is better); "
                        "bar: mean over folds, whisker: std, dots: folds"))
    ax.grid(axis="y", visible=False)
    return Plot("models", "Model comparison", _png(fig))


def _models(cv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    models = cv.get("models")
    if isinstance(models, dict):
        for name, m in models.items():
            if not isinstance(m, dict):
                continue
            folds = [_num(v) for v in m.get("folds") or [] if not isinstance(v, (dict, list))]
            mean = _num(m.get("mean"))
            if not math.isfinite(mean) and folds:
                fin = [v for v in folds if math.isfinite(v)]
                mean = sum(fin) / len(fin) if fin else math.nan
            std = _num(m.get("std"))
            if not math.isfinite(std):
                fin = [v for v in folds if math.isfinite(v)]
                mu = sum(fin) / len(fin) if fin else 0.0
                std = math.sqrt(sum((v - mu) ** 2 for v in fin) / len(fin)) if fin else 0.0
            if math.isfinite(mean):
                out[str(name)] = {"mean": mean, "std": std, "folds": folds, "raw": m}
    if not out and isinstance(cv.get("folds"), list):
        folds = [_num(v) for v in cv["folds"] if not isinstance(v, (dict, list))]
        fin = [v for v in folds if math.isfinite(v)]
        if fin:
            mean = _num(cv.get("mean"))
            out["model"] = {"mean": mean if math.isfinite(mean) else sum(fin) / len(fin),
                            "std": _num(cv.get("std")) if math.isfinite(_num(cv.get("std"))) else 0.0,
                            "folds": folds, "raw": {}}
    return out


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
        evidence = f.get("evidence") or {}
        rows.append({
            "code": code, "name": name, "severity": severity if severity in SEVERITY_COLOR else "info",
            "step": f.get("step"), "epoch": f.get("epoch"), "message": str(f.get("message", "")),
            "action": f.get("action"), "count": evidence.get("count") if isinstance(evidence, dict) else None,
            "evidence": json.dumps(evidence, indent=2, default=str, ensure_ascii=False) if evidence else "",
            "explanation": explanation,
        })
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


def _fit_tables(cv: dict[str, Any]) -> dict[str, Any]:
    models = _models(cv)
    lower = _lower_is_better(cv)
    nfolds = max([len(m["folds"]) for m in models.values()] + [0])
    best = cv.get("best_model")
    if best not in models and models:
        best = (min if lower else max)(models, key=lambda m: models[m]["mean"])
    secondary = []
    for m in models.values():
        for k, v in m["raw"].items():
            if isinstance(v, dict) and "mean" in v and k not in secondary:
                secondary.append(k)
    comparison = []
    for name, m in models.items():
        details = {k: v for k, v in m["raw"].items() if k not in ("mean", "std", "folds") and k not in secondary}
        comparison.append({
            "name": name, "mean": _fmt(m["mean"]), "std": _fmt(m["std"]), "best": name == best,
            "secondary": [_fmt((m["raw"].get(k) or {}).get("mean")) if isinstance(m["raw"].get(k), dict) else ""
                          for k in secondary],
            "details": _short(", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in details.items()), 300),
        })
    folds = []
    for i in range(nfolds):
        cells = []
        fold_vals = {n: m["folds"][i] for n, m in models.items() if i < len(m["folds"])}
        fin = {n: v for n, v in fold_vals.items() if math.isfinite(v)}
        fold_best = (min if lower else max)(fin, key=fin.get) if fin else None
        for name in models:
            v = fold_vals.get(name)
            cells.append({"value": _fmt(v) if v is not None else "", "best": name == fold_best})
        folds.append({"fold": i + 1, "cells": cells})
    summary = []
    for key, label in (("target", "target"), ("task", "task"), ("metric", "metric"), ("rows", "rows"),
                       ("n_folds", "folds"), ("seed", "seed"), ("time_s", "time (s)")):
        if key in cv and not isinstance(cv[key], (dict, list)):
            summary.append((label, str(cv[key])))
    feats = cv.get("features")
    if isinstance(feats, dict):
        summary.append(("features", ", ".join(f"{v} {k}" for k, v in feats.items())))
    weights = cv.get("blend_weights") if isinstance(cv.get("blend_weights"), dict) else {}
    dropped = cv.get("dropped_columns") if isinstance(cv.get("dropped_columns"), dict) else {}
    return {"models": list(models), "comparison": comparison, "folds": folds, "secondary": secondary,
            "lower": lower, "metric": str(cv.get("metric", "score")), "mean": _fmt(cv.get("mean")),
            "std": _fmt(cv.get("std")), "best": best, "summary": summary,
            "weights": {str(k): (v if isinstance(v, dict) else {"": v}) for k, v in weights.items()},
            "dropped": {str(k): str(v) for k, v in dropped.items()},
            "task_reason": str(cv.get("task_reason", "") or "")}


# ----------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    return env


def _plots(data: ReportData) -> list[Plot]:
    import matplotlib

    makers = []
    if data.run is not None:
        makers += [("loss", fig_loss, data.run), ("metric", fig_metric, data.run), ("lr", fig_lr, data.run),
                   ("grad", fig_grad, data.run), ("heatmap", fig_heatmap, data.run),
                   ("activations", fig_activations, data.run)]
    if data.cv is not None:
        makers.append(("models", fig_models, data.cv))
    plots = []
    with matplotlib.rc_context(_RC):
        for key, fn, arg in makers:
            try:
                p = fn(arg)
            except Exception as exc:  # one bad plot must not cost the whole report
                data.notes.append(f"the {key} plot could not be drawn ({type(exc).__name__}: {_short(str(exc))}).")
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
    sev = Counter(f.get("severity", "info") for f in data.findings)
    actions = run.actions if run else []
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
        "meta_rows": [(k, meta[k]) for k in ("mode", "steps", "epochs", "trainmedic", "started") if k in meta],
        "thresholds": json.dumps(meta.get("thresholds"), indent=1) if meta.get("thresholds") else "",
        "action_counts": sorted(Counter(str(a.get("action")) for a in actions).items()),
        "actions": [{"step": a.get("step"), "epoch": a.get("epoch"), "action": a.get("action"),
                     "reason": a.get("reason"), "detail": _detail(a)} for a in actions[:MAX_EVENT_ROWS]],
        "actions_more": max(0, len(actions) - MAX_EVENT_ROWS),
        "epochs": run.epochs if run else [],
        "quarantine": _quarantine_rows(run, data.findings),
        "run_empty": bool(run and run.empty),
        "fit": _fit_tables(data.cv) if data.cv is not None else None,
        "files": sorted(p.name for p in data.directory.iterdir() if p.is_file()) if data.directory.is_dir() else [],
    }
    return _env().get_template("report.html.j2").render(**ctx)


def write_report(out_dir: str | os.PathLike[str], *, cv: dict[str, Any] | None = None,
                 findings: list[Any] | None = None, title: str | None = None) -> Path:
    """Write ``out_dir/report.html`` from what the directory holds (a run, a fit, findings); returns its path.

    ``fit`` calls it after writing ``cv.json`` and ``findings.json`` (or passes ``cv=`` / ``findings=``).
    """
    out = Path(out_dir)
    html = render_report(out, cv=cv, findings=findings, title=title)
    atomic_write_text(out / "report.html", html)
    return out / "report.html"

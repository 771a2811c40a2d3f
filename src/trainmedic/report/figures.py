"""The plots of a training run, drawn with matplotlib (Agg, no pyplot state) and embedded as PNG.

Every step axis has integer ticks; every log axis has at least two labelled ticks (or falls back to a
linear one when the values span too little for a log scale to show anything). Each kind of event has its
own colour *and* marker, so they stay apart in grey print and for colour-blind readers. The epoch-mean
training loss leaves out the steps a rollback undid. "Best weights restored" is drawn at the epoch whose
weights came back, not at the step where training stopped. A run with several optimizers (a GAN) gets
one loss panel per optimizer and one curve per optimizer in the learning-rate and gradient plots.
Text drawn from user strings is kept out of matplotlib's mathtext.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from trainmedic.report.events import (
    Engine,
    RunData,
    engines,
    epoch_end_step,
    for_engine,
    kept_epoch_means,
    num,
    step_of,
    undone_ranges,
)


@dataclass(frozen=True)
class EventStyle:
    color: str
    marker: str
    line: str | None  # linestyle of a vertical line across the plot; None: a marker on the curve only
    label: str


# One style per action, each with its own marker. Point events sit on the curve at their step; line
# events cross the plot, with their marker on the bottom edge.
EVENT_STYLE: dict[str, EventStyle] = {
    "skip-step": EventStyle("#d62728", "x", None, "step skipped"),
    "clip": EventStyle("#ff7f0e", "d", None, "gradient clipped"),
    "forensics": EventStyle("#e377c2", "h", None, "forensics replay"),
    "quarantine-mask": EventStyle("#8c564b", "1", None, "batch with quarantined rows"),
    "rollback": EventStyle("#9467bd", "<", "-", "rollback"),
    "lr-change": EventStyle("#1f77b4", "s", "--", "lr change"),
    "quarantine": EventStyle("#8c564b", "P", ":", "quarantine"),
    "stop": EventStyle("#000000", "X", "-", "early stop"),
    "restore-best": EventStyle("#2ca02c", "*", "-.", "best weights restored"),
    "resume": EventStyle("#7f7f7f", ">", "-.", "resumed from checkpoint"),
    "zero-grad": EventStyle("#17becf", "o", ":", "zero-grad enabled"),
}
_SPARE_MARKERS = ("p", "H", "8", "^", "2", "3", "4", "+")
SEVERITY_COLOR = {"error": "#d62728", "warning": "#e6a100", "info": "#1f77b4"}
ENGINE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#17becf")

_RC = {"text.usetex": False, "font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
       "figure.dpi": 100, "savefig.dpi": 100, "axes.spines.top": False, "axes.spines.right": False}


def rc_context():
    """The report's matplotlib settings, scoped: the user's own rcParams are untouched."""
    import matplotlib

    return matplotlib.rc_context(_RC)


@dataclass
class Plot:
    key: str
    title: str
    png: str  # base64
    caption: str = ""
    figure: Any = None  # the matplotlib Figure it was drawn from (tests read its axes)
    hover: list[dict[str, Any]] | None = None  # the readout of each axes (trainmedic.report.hover)

    @classmethod
    def of(cls, key: str, title: str, fig: Any, caption: str = "", hover: list[dict[str, Any]] | None = None) -> Plot:
        return cls(key, title, png(fig), caption, fig, hover)


def event_style(action: str) -> EventStyle:
    style = EVENT_STYLE.get(action)
    if style is not None:
        return style
    marker = _SPARE_MARKERS[sum(map(ord, action)) % len(_SPARE_MARKERS)]
    return EventStyle("#555555", marker, "-", text(action))


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def text(s: Any) -> str:
    """Text for matplotlib: no mathtext ($...$) from user strings."""
    return str(s).replace("$", r"\$")


def short(s: Any, n: int = 160) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def figure(width: float, height: float, *, right: float = 0.77, left: float = 0.07, dpi: float | None = None):
    """A figure with fixed margins (the legend lives in the right margin): one draw, no tight bbox pass."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    bottom = min(0.35, 0.5 / height)
    top = 1 - min(0.25, 0.3 / height)
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top)
    return fig


def png(fig, dpi: float | None = None) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, pil_kwargs={"compress_level": 3})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def step_axis(ax) -> None:
    """Steps are whole numbers: no "2.5" tick on a ten-step run."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=2))


def log_axis(ax, axis: str = "y") -> None:
    """A log scale whose major ticks are labelled plainly ("0.02", not mathtext) with at least two of them
    in view: decades when the values span several, 1-2-5 or 1..9 within fewer. When even that shows fewer
    than two, the values span too little for a log scale to help, and the axis stays linear.

    Call it after everything is drawn: it reads the final limits.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale = ax.set_yscale if axis == "y" else ax.set_xscale
    target = ax.yaxis if axis == "y" else ax.xaxis
    set_scale("log")
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    if not (lo > 0 and hi > lo and math.isfinite(hi)):
        set_scale("linear")
        return
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0), tuple(float(i) for i in range(1, 10))):
        locator = LogLocator(base=10, subs=subs, numticks=9)
        shown = [t for t in locator.tick_values(lo, hi) if lo <= t <= hi]
        if len(shown) >= 2:
            target.set_major_locator(locator)
            target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            target.set_minor_formatter(NullFormatter())
            return
    set_scale("linear")


def use_log(values: list[float], ratio: float = 50.0) -> bool:
    pos = [v for v in values if math.isfinite(v)]
    return bool(pos) and min(pos) > 0 and max(pos) / min(pos) > ratio


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        x = step_of(r)
        if math.isfinite(x):
            xs.append(x)
            ys.append(num(r.get(key)))
    return xs, ys


def _parts(run: RunData) -> list[tuple[Engine | None, RunData]]:
    """One part per optimizer of a multi-optimizer run, or the run itself."""
    engs = engines(run)
    return [(e, for_engine(run, e)) for e in engs] if engs else [(None, run)]


def _epoch_lines(ax, run: RunData) -> None:
    steps = sorted({step_of(e) for e in run.epochs if math.isfinite(step_of(e))})
    if 0 < len(steps) <= 60:
        ax.vlines(steps, 0, 1, transform=ax.get_xaxis_transform(), colors="#bbbbbb", linestyles=":",
                  linewidth=0.8, zorder=0)


def _legend(ax, handles: list[Any]) -> None:
    base, _ = ax.get_legend_handles_labels()
    allh = list(base) + list(handles)
    if allh:
        ax.legend(handles=allh, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0)


def _mark_events(ax, run: RunData, xs: list[float], ys: list[float], *, findings: bool = True,
                 only: tuple[str, ...] | None = None, best_y: dict[Any, float] | None = None) -> list[Any]:
    """Draw the actions (``only`` those kinds) and, optionally, the findings on ``ax``; returns legend handles.

    ``best_y`` maps an epoch to the y of its evaluation, where "best weights restored" puts its star.
    """
    import numpy as np
    from matplotlib.lines import Line2D

    fin = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    fx = np.array([p[0] for p in fin])
    fy = np.array([p[1] for p in fin])
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction
    handles = []
    actions = [a for a in run.actions if math.isfinite(step_of(a)) and (only is None or a.get("action") in only)]
    for action, n in Counter(str(a.get("action")) for a in actions).items():
        style = event_style(action)
        evs = [a for a in actions if str(a.get("action")) == action]
        label = f"{style.label} ({n})"
        if action == "restore-best":
            steps = [_restored_at(run, a) for a in evs]
            epochs = sorted({a.get("epoch") for a in evs if a.get("epoch") is not None}, key=str)
            if epochs:
                label = f"{style.label}: epoch {', '.join(map(str, epochs))}"
        else:
            steps = [step_of(a) for a in evs]
        if style.line is not None:
            ax.vlines(steps, 0, 1, transform=edge, colors=style.color, linestyles=style.line, linewidth=1.2,
                      alpha=0.85, zorder=3)
            edge_steps = steps
            if action == "restore-best":  # a star on the evaluation whose weights came back
                at = [(s, (best_y or {}).get(a.get("epoch"))) for s, a in zip(steps, evs)]
                star = [(s, y) for s, y in at if y is not None and math.isfinite(y)]
                edge_steps = [s for s, y in at if y is None or not math.isfinite(y)]
                if star:
                    ax.scatter([p[0] for p in star], [p[1] for p in star], marker=style.marker, color=style.color,
                               s=120, zorder=6, edgecolors="white", linewidths=0.6)
            if edge_steps:
                ax.scatter(edge_steps, [0.03] * len(edge_steps), transform=edge, marker=style.marker,
                           color=style.color, s=40, zorder=5, clip_on=False)
            if action == "rollback":
                for a in evs:
                    to = num(a.get("to_step"))
                    if math.isfinite(to):
                        ax.axvspan(to, step_of(a), color=style.color, alpha=0.07, zorder=0, linewidth=0)
            handles.append(Line2D([], [], color=style.color, linestyle=style.line, marker=style.marker,
                                  label=label))
        else:
            if len(fx):
                ax.scatter(steps, np.interp(steps, fx, fy), marker=style.marker, color=style.color, s=36, zorder=4,
                           linewidths=1.5)
            else:
                ax.scatter(steps, [0.97] * len(steps), transform=edge, marker=style.marker, color=style.color,
                           s=36, zorder=4, linewidths=1.5)
            handles.append(Line2D([], [], color=style.color, marker=style.marker, linestyle="none", label=label))
    if findings and run.findings:
        handles += _mark_findings(ax, run)
    return handles


def _restored_at(run: RunData, action: dict[str, Any]) -> float:
    """Where "best weights restored" belongs: the end of the epoch whose weights came back."""
    at = epoch_end_step(run, action.get("epoch"))
    return at if math.isfinite(at) else step_of(action)


def _mark_findings(ax, run: RunData) -> list[Any]:
    from matplotlib.lines import Line2D

    edge = ax.get_xaxis_transform()
    handles = []
    by_sev: dict[str, list[float]] = {}
    for f in run.findings:
        s = step_of(f)
        if math.isfinite(s):
            by_sev.setdefault(str(f.get("severity", "info")), []).append(s)
    for sev, steps in by_sev.items():
        color = SEVERITY_COLOR.get(sev, "#555555")
        ax.scatter(steps, [1.0] * len(steps), transform=edge, marker="v", color=color, s=42, zorder=5,
                   clip_on=False, edgecolors="white", linewidths=0.5)
        handles.append(Line2D([], [], color=color, marker="v", linestyle="none",
                              label=f"{sev} finding ({len(steps)})"))
    lo, hi = ax.get_xlim()
    near = (hi - lo) / 25 if hi > lo else 1.0
    last, level = -math.inf, 0
    for f in sorted(run.findings[:12], key=step_of):
        s = step_of(f)
        if math.isfinite(s):
            level = (level + 1) % 3 if s - last < near else 0  # stagger labels of close findings
            last = s
            ax.annotate(text(f.get("code", "")), (s, 1.0), xycoords=edge, xytext=(2, 3 + 8 * level),
                        textcoords="offset points", fontsize=7, color="#333333", annotation_clip=False)
    return handles


def _g(v: Any) -> str:
    x = num(v)
    return f"{x:.3g}" if math.isfinite(x) else str(v)


def event_text(ev: dict[str, Any]) -> str:
    """What the hover readout says about an action or a finding."""
    if ev.get("type") == "finding":
        return f"{ev.get('code')} ({ev.get('severity', 'info')}): {short(ev.get('message', ''), 120)}"
    action, reason = str(ev.get("action")), ev.get("reason")
    why = f" ({reason})" if reason else ""
    if action == "rollback":
        return f"rollback to step {ev.get('to_step')}, lr {_g(ev.get('lr_before'))} -> {_g(ev.get('lr_after'))}{why}"
    if action == "lr-change":
        return f"lr {_g(ev.get('lr_before'))} -> {_g(ev.get('lr_after'))}{why}"
    if action == "clip":
        return f"gradient norm {_g(ev.get('grad_norm'))} clipped to {_g(ev.get('clipped_to'))}{why}"
    if action == "restore-best":
        return f"weights of epoch {ev.get('epoch')} restored{why}"
    return event_style(action).label + why


def _hover_events(run: RunData, only: tuple[str, ...] | None = None, findings: bool = True) -> list[tuple[float, str]]:
    out = [(step_of(a), event_text(a)) for a in run.actions if only is None or a.get("action") in only]
    if findings:
        out += [(step_of(f), event_text(f)) for f in run.findings]
    return out


# ----------------------------------------------------------------------------------------------------
# the run's figures
# ----------------------------------------------------------------------------------------------------
def _has_val(run: RunData) -> bool:
    return any(math.isfinite(num(e.get("val_loss"))) for e in run.epochs)


def _loss_panel(ax, run: RunData, engine: Engine | None) -> tuple[list[Any], list[tuple[float, str]]]:
    """Draw one loss panel; returns its curves and events for the hover readout."""
    xs, ys = series(run.samples, "loss")
    finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    if finite:
        ax.plot([p[0] for p in finite], [p[1] for p in finite], color="#1f77b4", linewidth=1.0,
                label="training loss (per step)")
    bad = [x for x, y in zip(xs, ys) if not math.isfinite(y)]
    if bad:
        ax.scatter(bad, [0.03] * len(bad), transform=ax.get_xaxis_transform(), marker="|", color="#d62728",
                   s=60, label=f"non-finite loss ({len(bad)})", zorder=4)
    means, changed = kept_epoch_means(run)
    if means:
        ax.plot([p[0] for p in means], [p[1] for p in means], color="#444444", marker="o", markersize=3,
                linewidth=1.0,
                label="epoch mean, kept steps" if changed else "training loss (epoch mean)")
    val = [(step_of(e), num(e.get("val_loss")), e.get("epoch")) for e in run.epochs]
    val = [v for v in val if math.isfinite(v[0]) and math.isfinite(v[1])]
    if val:
        ax.plot([v[0] for v in val], [v[1] for v in val], color="#e377c2", marker="s", markersize=4,
                linewidth=1.6, label="validation loss")
    _epoch_lines(ax, run)
    best_y = {v[2]: v[1] for v in val} or {e: y for e, y in _epoch_train(run).items()}
    handles = _mark_events(ax, run, xs, ys, best_y=best_y)
    values = [p[1] for p in finite] + [p[1] for p in means] + [v[1] for v in val]
    if use_log(values):
        log_axis(ax)
    ax.set_ylabel(text(f"loss: {short(engine.name, 24)}") if engine else "loss")
    if engine is not None:
        ax.set_title(text(engine.name), loc="left", fontsize=9)
    _legend(ax, handles)
    curves = [("loss", list(zip(xs, ys))), ("epoch mean", means), ("validation", [(v[0], v[1]) for v in val])]
    return curves, _hover_events(run)


def _epoch_train(run: RunData) -> dict[Any, float]:
    return {e.get("epoch"): num(e.get("train_loss")) for e in run.epochs}


def fig_loss(run: RunData) -> Plot | None:
    parts = [(e, r) for e, r in _parts(run) if r.samples or r.epochs]
    if not parts:
        return None
    n = len(parts)
    fig = figure(10, 3.6 if n == 1 else 2.7 * n + 0.5)
    first = None
    axes = []
    for i, (engine, part) in enumerate(parts):
        ax = fig.add_subplot(n, 1, i + 1, sharex=first)
        first = first or ax
        axes.append((ax, part, engine))
        if i == n - 1:
            ax.set_xlabel("step")
    if n > 1:
        fig.subplots_adjust(hspace=0.45)
    readouts = []
    for ax, part, engine in axes:
        step_axis(ax)
        readouts.append((ax, *_loss_panel(ax, part, engine)))
    from trainmedic.report.hover import panel

    hover = [panel(ax, curves, events) for ax, curves, events in readouts]  # once every panel is drawn
    has_val = any(_has_val(p) for _, p in parts)
    title = ("Loss and validation" if has_val else "Loss") + (" per optimizer" if n > 1 else "") + \
        ", with every event"
    caption = ("Epoch mean, kept steps: the mean training loss of each epoch without the steps a rollback "
               "undid. " if any(kept_epoch_means(p)[1] for _, p in parts) else "")
    caption += ("Events: vertical lines for rollbacks (shaded: the steps undone), lr changes, quarantines, "
               "early stop and resumes, each with its own marker on the bottom edge; a star for the best "
               "weights restored, at the epoch they come from; markers on the curve for skipped, clipped and "
               "replayed steps; triangles on the top edge for findings. Dotted grey lines: epoch ends.")
    return Plot.of("loss", title, fig, caption, hover)


def fig_metric(run: RunData) -> Plot | None:
    pts = [(step_of(e), num(e.get("val_metric")), e.get("epoch")) for e in run.epochs]
    pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not pts:
        return None
    fig = figure(10, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#2ca02c", marker="o", markersize=4,
            label="validation metric")
    lines = tuple(k for k, s in EVENT_STYLE.items() if s.line is not None) + tuple(
        str(a.get("action")) for a in run.actions if str(a.get("action")) not in EVENT_STYLE)
    handles = _mark_events(ax, run, [p[0] for p in pts], [p[1] for p in pts], findings=False, only=lines,
                           best_y={p[2]: p[1] for p in pts})
    step_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("metric")
    _legend(ax, handles)
    from trainmedic.report.hover import panel

    hover = [panel(ax, [("validation metric", [(p[0], p[1]) for p in pts])], _hover_events(run, lines, False))]
    return Plot.of("metric", "Validation metric", fig, hover=hover)


def fig_lr(run: RunData) -> Plot | None:
    fig = figure(10, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    drawn = []
    curves = []
    parts = _parts(run)
    for i, (engine, part) in enumerate(parts):
        xs, ys = series(part.samples, "lr")
        pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if not pts:
            pts = [(step_of(e), num(e.get("lr"))) for e in part.epochs]
            pts = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if pts:
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", linewidth=1.2,
                    color=ENGINE_COLORS[i % len(ENGINE_COLORS)],
                    label=text(f"learning rate: {engine.name}") if engine else "learning rate")
            drawn += pts
            curves.append((f"lr: {engine.name}" if engine else "lr", pts))
    if not drawn:
        return None
    xs = [p[0] for p in drawn]
    handles = _mark_events(ax, run, xs, [p[1] for p in drawn], findings=False,
                           only=("lr-change", "rollback", "resume")) if len(parts) == 1 else []
    _epoch_lines(ax, run)
    if use_log([p[1] for p in drawn], 10.0):
        log_axis(ax)
    step_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("lr")
    _legend(ax, handles)
    from trainmedic.report.hover import panel

    hover = [panel(ax, curves, _hover_events(run, ("lr-change", "rollback", "resume"), False))]
    return Plot.of("lr", "Learning rate", fig, hover=hover)


def fig_grad(run: RunData) -> Plot | None:
    fig = figure(10, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    parts = _parts(run)
    curves = []
    for i, (engine, part) in enumerate(parts):
        xs, ys = series(part.samples, "grad_norm")
        pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and y > 0]
        if not pts:
            continue
        curves.append((f"gradient norm: {engine.name}" if engine else "gradient norm", pts))
        color = "#555555" if engine is None else ENGINE_COLORS[i % len(ENGINE_COLORS)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linewidth=0.9,
                label=text(f"gradient norm: {engine.name}") if engine else "global gradient norm")
    if not curves:
        return None
    clips = [a for a in run.actions if a.get("action") == "clip" and math.isfinite(num(a.get("clipped_to")))]
    if clips:
        ax.scatter([step_of(a) for a in clips], [num(a.get("clipped_to")) for a in clips], marker="_",
                   color="#2ca02c", s=80, zorder=5, label="clipped to")
    handles = []
    if len(parts) == 1:
        xs, ys = series(run.samples, "grad_norm")
        handles = _mark_events(ax, run, xs, ys, findings=False, only=("clip", "skip-step", "rollback"))
    _epoch_lines(ax, run)
    log_axis(ax)
    step_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    _legend(ax, handles)
    from trainmedic.report.hover import panel

    hover = [panel(ax, curves, _hover_events(run, ("clip", "skip-step", "rollback"), False))]
    title = "Gradient norm (global)" if len(parts) == 1 else "Gradient norm per optimizer"
    return Plot.of("grad", title, fig, hover=hover)


def _cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")


def _heat_matrix(run: RunData):
    import numpy as np

    rows = [r for r in run.layer_samples if isinstance(r.get("norms"), list) and math.isfinite(step_of(r))]
    n = max((len(r["norms"]) for r in rows), default=0)
    if not rows or n == 0:
        return None
    names = list((run.meta or {}).get("layers") or [])
    if len(names) != n:
        names = [f"param {i}" for i in range(n)]
    steps = np.array([step_of(r) for r in rows])
    mat = np.full((n, len(rows)), np.nan)
    nonfinite = np.zeros((n, len(rows)), dtype=bool)
    for j, r in enumerate(rows):
        for i, raw in enumerate(r["norms"]):
            v = num(raw)
            mat[i, j] = v
            nonfinite[i, j] = raw is not None and not math.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        logm = np.where(np.isfinite(mat) & (mat > 0), np.log10(np.where(mat > 0, mat, 1.0)), np.nan)
    return names, steps, logm, nonfinite


def fig_heatmap(run: RunData) -> Plot | None:
    import numpy as np

    mats = [(engine, m) for engine, part in _parts(run) if (m := _heat_matrix(part)) is not None]
    if not mats:
        return None
    heights = [min(8.0, max(1.6, 0.5 + 0.22 * len(m[0]))) for _, m in mats]
    width_names = max((len(short(x, 48)) for _, m in mats for x in m[0]), default=8)
    fig = figure(10, sum(heights) + 0.6 * len(mats), left=min(0.4, 0.03 + 0.0065 * width_names), right=0.97)
    finite = [m[2][np.isfinite(m[2])] for _, m in mats]
    allv = np.concatenate(finite) if finite else np.array([])
    vmin, vmax = (float(allv.min()), float(allv.max())) if allv.size else (None, None)
    grid = fig.add_gridspec(len(mats), 1, height_ratios=heights, hspace=0.5)
    cmap = _cmap()
    im = None
    for k, (engine, (names, steps, logm, nonfinite)) in enumerate(mats):
        ax = fig.add_subplot(grid[k])
        n, cols = logm.shape
        x0, x1 = float(steps.min()), float(steps.max())
        if x1 == x0:
            x1 = x0 + 1
        half = (x1 - x0) / max(1, cols - 1) / 2
        extent = (x0 - half, x1 + half, n - 0.5, -0.5)
        im = ax.imshow(np.ma.masked_invalid(logm), aspect="auto", interpolation="nearest", cmap=cmap,
                       extent=extent, vmin=vmin, vmax=vmax)
        if nonfinite.any():
            overlay = np.zeros((n, cols, 4))
            overlay[nonfinite] = (0.84, 0.15, 0.16, 1.0)
            ax.imshow(overlay, aspect="auto", interpolation="nearest", extent=extent)
        every = max(1, math.ceil(n / 40))
        ticks = list(range(0, n, every))
        ax.set_yticks(ticks)
        ax.set_yticklabels([text(short(names[i], 48)) for i in ticks], fontsize=7)
        ax.grid(False)
        step_axis(ax)
        if engine is not None:
            ax.set_title(text(engine.name), loc="left", fontsize=9)
        if k == len(mats) - 1:
            ax.set_xlabel("step")
    cb = fig.colorbar(im, ax=fig.axes, pad=0.01)
    cb.set_label("log10 gradient norm")
    caption = "One row per parameter tensor, first layer at the top. Grey: no gradient; red: NaN/Inf."
    return Plot.of("heatmap", "Gradient norm per layer over time", fig, caption)


def fig_activations(run: RunData) -> Plot | None:
    """``activation_sample`` events: ``{"type": "activation_sample", "step": int, "layers": {name: {stat: x}}}``."""
    rows = [e for e in run.other if e.get("type") == "activation_sample" and isinstance(e.get("layers"), dict)
            and math.isfinite(step_of(e))]
    if not rows:
        return None
    stats: list[str] = []
    for r in rows:
        for v in r["layers"].values():
            if isinstance(v, dict):
                stats += [k for k in v if k not in stats and isinstance(v[k], (int, float))]
    preferred = ("std", "mean", "dead", "saturated")
    stats = ([k for k in preferred if k in stats] + [k for k in stats if k not in preferred])[:3]
    if not stats:
        return None
    names = list(dict.fromkeys(n for r in rows for n in r["layers"]))[:12]
    fig = figure(10, 2.3 * len(stats) + 0.4)
    for i, stat in enumerate(stats):
        ax = fig.add_subplot(len(stats), 1, i + 1)
        for name in names:
            pts = [(step_of(r), num((r["layers"].get(name) or {}).get(stat))) for r in rows]
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1,
                        label=text(short(name, 30)))
        ax.set_ylabel(text(stat))
        step_axis(ax)
        if i == 0:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        if i == len(stats) - 1:
            ax.set_xlabel("step")
    fig.subplots_adjust(hspace=0.35)
    return Plot.of("activations", "Sampled activation statistics", fig,
                "Per layer, at the steps where activations were sampled (at most 12 layers shown).")


RUN_FIGURES = (("loss", fig_loss), ("metric", fig_metric), ("lr", fig_lr), ("grad", fig_grad),
               ("heatmap", fig_heatmap), ("activations", fig_activations))


# ----------------------------------------------------------------------------------------------------
# a small curve for the demo's dashboard
# ----------------------------------------------------------------------------------------------------
def sparkline(run: RunData, *, reference: float | None = None, first_step: float | None = None,
              label: str = "") -> str | None:
    """A small loss curve (base64 PNG): the per-step loss, the validation loss, rolled-back steps shaded,
    ``first_step`` (the first finding) as a red line and ``reference`` (the healthy run's final loss) as a
    dashed green line. None when the run recorded no loss."""
    xs, ys = series(run.samples, "loss")
    pts = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
    val = [(step_of(e), num(e.get("val_loss"))) for e in run.epochs]
    val = [(x, y) for x, y in val if math.isfinite(x) and math.isfinite(y)]
    if not pts and not val:
        return None
    with rc_context():
        fig = figure(2.9, 1.05, left=0.02, right=0.98, dpi=100)
        fig.subplots_adjust(left=0.02, right=0.98, top=0.96, bottom=0.08)
        ax = fig.add_subplot(1, 1, 1)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#1f77b4", linewidth=0.9)
        if val:
            ax.plot([p[0] for p in val], [p[1] for p in val], color="#e377c2", linewidth=1.2, marker="s",
                    markersize=2)
        bad = [x for x, y in zip(xs, ys) if not math.isfinite(y)]
        if bad:
            ax.scatter(bad, [0.06] * len(bad), transform=ax.get_xaxis_transform(), marker="|", color="#d62728",
                       s=30, zorder=4)
        for to, at in undone_ranges(run):
            ax.axvspan(to, at, color="#9467bd", alpha=0.15, linewidth=0)
        if first_step is not None and math.isfinite(first_step):
            ax.axvline(first_step, color="#d62728", linewidth=1.0)
        if reference is not None and math.isfinite(reference):
            ax.axhline(reference, color="#2ca02c", linewidth=1.0, linestyle="--")
        values = [p[1] for p in pts] + [p[1] for p in val] + ([reference] if reference else [])
        if use_log(values, 20.0):
            ax.set_yscale("log")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.minorticks_off()
        ax.grid(False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.spines["left"].set_color("#cccccc")
        ax.spines["bottom"].set_color("#cccccc")
        return png(fig, dpi=200)

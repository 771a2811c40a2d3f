"""``trainmedic lr-find [--out DIR] [--steps N] [--start-lr A --end-lr B] SCRIPT [ARGS...]``: a zero-code
learning-rate range test of the script's own model, optimizer, batches and loss.

The sweep itself is :mod:`trainmedic.instrument.lr_sweep`; the suggestion rule is the one of
:func:`trainmedic.lr_find` (:func:`~trainmedic.lr_find.judge_curve`). This module reads the options, prints
the curve on stderr (the script's stdout stays the script's) and writes ``lr_find.png``, ``lr_find.html``
and ``lr_find.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from trainmedic.errors import UsageError

HELP = """\
Find a learning rate for a PyTorch training script without changing it: the script runs as with
`python SCRIPT ARGS...`, and its own optimizer steps (its model, its batches, its loss) become a
learning-rate range test. The rate of the first optimizer that steps grows exponentially from --start-lr
to --end-lr over --steps steps; the sweep stops early once the loss diverges. Then the weights and the
optimizer are put back as they were before the sweep and the script is stopped.

Printed on stderr: the curve (loss against the rate, one row per decade), the suggested rate and where
the loss diverges, and TM209 when the script's own rate is past divergence or far below the suggestion.
Written to DIR: lr_find.png, lr_find.html, lr_find.json. --json also prints the result as one line of
JSON, the last line on stdout (the script's own output comes before it).

The suggestion is half a decade below the rate at the lowest smoothed loss (see `trainmedic.lr_find`);
it assumes the script trains at a constant rate or a gentle decay.

The script runs for up to --steps optimizer steps: what it does in those steps happens (a checkpoint it
saves then holds swept weights). Exit status: 0 with a suggestion, 1 when there is no curve (the script
never stepped an optimizer, stopped before 5 steps, or steps with a closure) or no suggestion (the loss
turned NaN/Inf before the curve dipped and rose, or the script ended first: the line says which), 2 on a
usage error.
"""

MIN_POINTS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("lr-find", help="learning-rate range test of a training script (no code changes)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DIR", help="where to write the curve (default runs/<script>-lr-find-<time>)")
    p.add_argument("--steps", metavar="N", type=int, default=100, help="optimizer steps of the sweep (default 100)")
    p.add_argument("--start-lr", metavar="A", type=float, default=1e-7, help="first rate (default 1e-7)")
    p.add_argument("--end-lr", metavar="B", type=float, default=10.0, help="last rate (default 10)")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line on stdout")
    p.add_argument("script", help="the training script (a .py file, or a folder or zip with __main__.py)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    p.set_defaults(func=_lr_find)


def _lr_find(args: argparse.Namespace) -> int:
    from trainmedic.instrument.lr_sweep import sweep_script
    from trainmedic.instrument.main_module import resolve
    from trainmedic.lr_find import Sweep, judge_curve

    if args.steps < 10:
        raise UsageError(f"--steps must be at least 10, got {args.steps}")
    if not (0 < args.start_lr < args.end_lr) or not math.isfinite(args.end_lr):
        raise UsageError(f"need 0 < --start-lr < --end-lr, got {args.start_lr:g} and {args.end_lr:g}")
    script = resolve(args.script)  # a bad path is one line before anything runs
    out = Path(args.out) if args.out else default_out(script.stem)
    outcome = sweep_script(args.script, list(args.args), Sweep(args.start_lr, args.end_lr, args.steps))
    for problem in outcome.problems:
        print(f"trainmedic lr-find: {problem}", file=sys.stderr)
    reason = no_curve_reason(outcome)
    if reason is not None:
        print(f"trainmedic lr-find: {reason}", file=sys.stderr)
        if args.json:
            print(json.dumps({"version": 1, "suggestion": None, "error": reason, "script_ended": outcome.ended}))
        return 1
    res = judge_curve(outcome.lrs, outcome.losses, stopped=outcome.stopped, configured_lr=outcome.configured_lr)
    why_not = why_no_suggestion(res, outcome, args.steps)
    if why_not is not None:  # the curve says nothing about the rate: no suggestion, no TM209
        res.suggestion, res.findings, res.lr_diverged = None, [], None
    doc = document(res, outcome, args)
    doc["no_suggestion"] = why_not
    print_curve(res, outcome, args.steps, why_not)
    written = write_files(out, res, doc)
    print(f"trainmedic lr-find: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, allow_nan=False), flush=True)
    return 0 if res.suggestion is not None else 1


def why_no_suggestion(res: Any, outcome: Any, steps: int) -> str | None:
    """Why the curve, though measured, has no minimum to read a rate from; None when it has one.

    * The loss turned NaN/Inf while the smoothed curve had dropped less than 10 % from its start and not
      risen: a diverging loss climbs first (and is stopped there), so the batch or the model produced it
      (a NaN row, a log of 0), as it would at any rate.
    * The loss turned NaN/Inf while the curve was still at its lowest: there is no minimum before it.
    * The script ended before the sweep's last step, before the loss clearly dipped and rose: the curve
      stops mid-way.
    """
    sm = [v for v in res.smoothed if isinstance(v, float) and math.isfinite(v)]
    finite = [v for v in res.losses if math.isfinite(v)]
    if len(sm) < 2 or not finite:
        return None
    where = f"step {len(res.losses)} (lr {_fmt(res.lrs[-1])})"
    if not math.isfinite(res.losses[-1]):
        start, low = sm[0], min(sm)
        scale = abs(start) or 1.0
        if (start - low) / scale < 0.10 and finite[-1] - low <= 0.5 * scale:
            return (f"the loss turned {res.losses[-1]} at {where} before the curve showed any learning or rise: "
                    f"more likely a NaN/Inf from the batch or the model than from the rate (`trainmedic run` "
                    f"names its op and rows: TM210, TM313)")
        if sm.index(low) >= len(sm) - 3:
            return (f"the loss turned {res.losses[-1]} at {where} while the curve was still at its lowest: it has "
                    f"no minimum to read (a NaN/Inf from the batch or the model, or a rate that jumped straight "
                    f"past divergence; `trainmedic run` tells them apart)")
        return None
    if not outcome.finished and (res.lr_diverged is None or not res.confident):
        return (f"the script ended after {len(res.lrs)} of {steps} steps, at lr {_fmt(res.lrs[-1])}, before the "
                f"loss rose: the curve has no minimum to read; "
                + (f"run with --steps {len(res.lrs)} or fewer, or let the script run longer" if len(res.lrs) >= 10
                   else "let the script run longer"))
    return None


def default_out(stem: str) -> Path:
    return Path("runs") / f"{stem}-lr-find-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def no_curve_reason(outcome: Any) -> str | None:
    """One line when there is nothing to suggest from, else None."""
    from trainmedic.instrument.lr_sweep import finite_points

    how = _ended(outcome.ended)
    if outcome.optimizer is None:
        return (f"the script never stepped an optimizer ({how}): nothing to sweep. lr-find needs a loop that "
                f"calls optimizer.step()")
    if outcome.closure_steps and not outcome.losses:
        return (f"{outcome.optimizer}.step(closure) computes its loss inside the step (LBFGS): lr-find sweeps "
                f"optimizers stepped after loss.backward(), not closure steps; the script was stopped")
    if finite_points(outcome) < MIN_POINTS:
        if outcome.steps_without_loss and not outcome.losses:
            return (f"{outcome.optimizer}.step() was called {outcome.steps_without_loss} times without a "
                    f"backward() before it (step(closure)?): lr-find cannot read the loss of such steps")
        return (f"the script stepped {outcome.optimizer} only {len(outcome.losses)} time(s) after a backward() "
                f"before {how}; a curve needs at least {MIN_POINTS} (make the script run "
                f"longer)")
    return None


def _ended(ended: str) -> str:
    if ended == "returned":
        return "it ended normally"
    if ended.startswith("exited"):
        return f"it {ended}"
    if ended == "swept":
        return "the sweep stopped it"
    return f"it {ended}"


def document(res: Any, outcome: Any, args: argparse.Namespace) -> dict[str, Any]:
    from trainmedic.findings import jsonable

    d = res.as_dict()
    d.update({"version": 1, "script": args.script, "argv": list(args.args), "optimizer": outcome.optimizer,
              "model": outcome.model, "other_optimizers": outcome.other_optimizers, "steps_requested": args.steps,
              "start_lr": args.start_lr, "end_lr": args.end_lr, "script_ended": outcome.ended,
              "swept_to_the_end": outcome.finished})
    return jsonable(d)


# -- printing ----------------------------------------------------------------------------------------------
def print_curve(res: Any, outcome: Any, steps: int, why_not: str | None = None) -> None:
    """The curve on stderr: a header, one row per decade with a bar of the smoothed loss, the suggestion."""
    w = sys.stderr.write
    if res.losses and not math.isfinite(res.losses[-1]):
        how = "stopped: the loss turned NaN/Inf"
    elif outcome.stopped:
        how = "the loss diverged"
    else:
        how = "all steps taken" if outcome.finished else _ended(outcome.ended)
    w(f"trainmedic lr-find: {outcome.optimizer} of {outcome.model or 'the model'}, configured lr "
      f"{_fmt(outcome.configured_lr)}: {len(res.lrs)} steps from {_fmt(res.lrs[0])} to {_fmt(res.lrs[-1])} "
      f"({how})\n")
    if not outcome.finished:
        w(f"  note: the script ended after {len(res.lrs)} of {steps} steps ({_ended(outcome.ended)}); the curve "
          f"stops at {_fmt(res.lrs[-1])}\n")
    if outcome.other_optimizers:
        w(f"  note: {outcome.other_optimizers} other optimizer(s) kept their own rate\n")
    for line in curve_rows(res):
        w(line + "\n")
    if res.suggestion is None:
        w(f"  no suggestion: {why_not or 'the curve has too few finite points'}\n")
    else:
        trust = ("" if res.confident else
                 f" (the curve barely dips, {res.valley_z:.1f} standard errors: not trusted, a tenth of the "
                 f"minimum is given; try more --steps)")
        w(f"  suggested lr: {_fmt(res.suggestion)} [{res.rule}]{trust}\n")
        w(f"  lowest loss at {_fmt(res.lr_min_loss)}; diverges from "
          f"{_fmt(res.lr_diverged) if res.lr_diverged is not None else 'beyond the range'}\n")
    for f in res.findings:
        w(f"  {f.code}: {f.message}\n")


def curve_rows(res: Any, width: int = 30) -> list[str]:
    """One row per decade (the point nearest each power of ten) plus the marked points, with a bar."""
    lrs, sm = res.lrs, res.smoothed
    finite = [(i, v) for i, v in enumerate(sm) if isinstance(v, float) and math.isfinite(v)]
    if not finite:
        return []
    i_min, lo = min(finite, key=lambda t: t[1])
    hi = max(v for i, v in finite if i <= i_min)  # the divergence tail would flatten the valley: cap there
    span = hi - lo or 1.0
    marks: dict[int, list[str]] = {}

    def nearest(x: float | None) -> int | None:
        if x is None or x <= 0:
            return None
        return min(range(len(lrs)), key=lambda i: abs(math.log10(lrs[i]) - math.log10(x)))

    for label, x in (("suggested", res.suggestion), ("lowest loss", res.lr_min_loss),
                     ("diverges", res.lr_diverged), ("configured", res.configured_lr)):
        i = nearest(x)
        if i is not None and x is not None and lrs[0] / 2 <= x <= lrs[-1] * 2:
            marks.setdefault(i, []).append(label)
    rows = set(marks)
    for k in range(math.floor(math.log10(lrs[0])), math.ceil(math.log10(lrs[-1])) + 1):
        i = nearest(10.0**k)
        if i is not None:
            rows.add(i)
    out = [f"  {'lr':>9}  {'loss':>10}  (smoothed, the centered mean the suggestion reads)"]
    for i in sorted(rows):
        v = sm[i]
        if isinstance(v, float) and math.isfinite(v):
            n = int(round((v - lo) / span * width))
            bar = "█" * n + "▏" if n <= width else "█" * width + " ↑"
        else:
            bar = "(not finite)"
        note = f"  <- {', '.join(marks[i])}" if i in marks else ""
        out.append(f"  {lrs[i]:>9.2e}  {v:>10.4g}  {bar}{note}")
    return out


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


# -- files -------------------------------------------------------------------------------------------------
def write_files(out: Path, res: Any, doc: dict[str, Any]) -> list[Path]:
    from trainmedic.findings import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(out / "lr_find.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
    written.append(out / "lr_find.json")
    png = figure_png(res)
    if png is not None:
        tmp = out / ".lr_find.png.tmp"
        tmp.write_bytes(png)
        tmp.replace(out / "lr_find.png")
        written.append(out / "lr_find.png")
    atomic_write_text(out / "lr_find.html", page(res, doc, png))
    written.append(out / "lr_find.html")
    return written


def figure_png(res: Any) -> bytes | None:
    """The curve as a PNG (matplotlib, Agg, no pyplot state); None if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    res.plot(ax=ax)
    if res.configured_lr:
        ax.axvline(res.configured_lr, color="gray", linestyle=":", label=f"configured: {res.configured_lr:.2g}")
    if res.lr_diverged:
        ax.axvline(res.lr_diverged, color="black", linestyle="-.", alpha=0.5,
                   label=f"diverges: {res.lr_diverged:.2g}")
    finite = [v for v in res.smoothed if isinstance(v, float) and math.isfinite(v)]
    if finite:  # the divergence tail can be orders of magnitude above the valley: keep the valley readable
        lo, hi = min(finite), max(finite)
        start = finite[0]
        top = max(start, lo) + 0.5 * (max(start, lo) - lo) if hi > 3 * max(start, 1e-12) else hi
        ax.set_ylim(lo - 0.05 * (top - lo + 1e-12), top + 0.05 * (top - lo + 1e-12))
    ax.legend(fontsize=8)
    ax.set_title("learning-rate range test")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def page(res: Any, doc: dict[str, Any], png: bytes | None) -> str:
    """A small self-contained HTML page: the figure (embedded), the suggestion, the findings, the points."""
    e = html.escape
    img = (f'<img alt="loss against learning rate" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
           if png else "<p>(matplotlib is not installed: no figure)</p>")
    cands = "".join(f"<tr><td>{e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in res.candidates.items())
    finds = "".join(f"<li><b>{e(f.code)}</b> {e(f.message)}</li>" for f in res.findings) or "<li>none</li>"
    pts = "".join(f"<tr><td>{lr:.3e}</td><td>{raw:.5g}</td><td>{sm:.5g}</td></tr>"
                  for lr, raw, sm in zip(res.lrs, res.losses, res.smoothed))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lr-find: {e(str(doc.get("script")))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>Learning-rate range test</h1>
<p>Script <code>{e(str(doc.get("script")))}</code>, optimizer {e(str(doc.get("optimizer")))} of
{e(str(doc.get("model")))}, configured lr {_fmt(res.configured_lr)}; {len(res.lrs)} steps from
{_fmt(res.lrs[0])} to {_fmt(res.lrs[-1])}{" (stopped: the loss diverged)" if res.stopped_early else ""}.</p>
<p><b>Suggested lr: {_fmt(res.suggestion)}</b> ({e(res.rule)}{"" if res.confident else ", not trusted: the curve barely dips"});
lowest smoothed loss at {_fmt(res.lr_min_loss)}; diverges from {_fmt(res.lr_diverged)}.</p>
{img}
<h2>Findings</h2><ul>{finds}</ul>
<h2>Candidates</h2><table><tr><th>rule</th><th>lr</th></tr>{cands}</table>
<h2>Points</h2><table><tr><th>lr</th><th>loss</th><th>smoothed</th></tr>{pts}</table>
</body></html>
"""

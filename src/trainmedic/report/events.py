"""Reading ``events.jsonl`` for the report: the records by type, the engines, what a rollback undid.

``events.jsonl`` is a meta line, then the findings, actions and epochs in order, then the downsampled
curves (``sample``: step, loss, grad_norm, lr; ``layer_sample``: step, per-parameter gradient norms).
A run with several optimizers (a GAN) writes ``"engine": i`` on every record of optimizer ``i`` and lists
the engines in the meta line (``"engines": [{"index": i, "name": ..., "layers": [...], "run": {...}}]``).
Everything here tolerates what an older or damaged file lacks: a missing key is simply not shown.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any


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


def read_events(path: str | os.PathLike[str]) -> RunData:
    """Parse ``events.jsonl`` line by line; unreadable lines are counted and skipped, never fatal."""
    run = RunData()
    with open(path, "rb") as fh:
        raw = fh.read()
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    ends_cleanly = text.endswith("\n") or not text
    buckets = {"sample": run.samples, "layer_sample": run.layer_samples, "epoch": run.epochs,
               "action": run.actions, "finding": run.findings}
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
        if kind == "meta":
            if run.meta is None:
                run.meta = ev
        else:
            buckets.get(kind, run.other).append(ev)
    return run


# ----------------------------------------------------------------------------------------------------
# numbers
# ----------------------------------------------------------------------------------------------------
def num(v: Any) -> float:
    """A float from a JSON value (jsonable writes NaN/Inf as strings); anything else is NaN."""
    if isinstance(v, (bool, int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def step_of(ev: dict[str, Any]) -> float:
    return num(ev.get("step"))


# ----------------------------------------------------------------------------------------------------
# engines (several optimizers in one run)
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    key: Any  # the value of "engine" in the records (the optimizer's index)
    name: str  # what the report calls it
    meta: dict[str, Any]  # its entry in meta["engines"], if any


def engines(run: RunData) -> list[Engine]:
    """The engines of a run with several optimizers, in order; [] for a run with one."""
    keys: list[Any] = []
    for rows in (run.samples, run.epochs, run.actions, run.findings, run.layer_samples):
        for r in rows:
            k = r.get("engine")
            if k is not None and not isinstance(k, (dict, list)) and k not in keys:
                keys.append(k)
    if len(keys) < 2:
        return []
    listed = [e for e in (run.meta or {}).get("engines") or [] if isinstance(e, dict)]
    out = []
    for k in keys:
        entry = next((e for e in listed if e.get("index") == k), None) or \
            next((e for e in listed if e.get("name") == k), None) or {}
        name = entry.get("name") or (k if isinstance(k, str) else f"optimizer {k}")
        if isinstance(k, int) and entry.get("name"):
            name = f"{entry['name']} (optimizer {k})"
        out.append(Engine(k, str(name), entry))
    return out


def for_engine(run: RunData, engine: Engine) -> RunData:
    """The part of the run that belongs to ``engine`` (records without an engine belong to every one)."""

    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r.get("engine", engine.key) == engine.key]

    meta = dict(run.meta or {})
    if isinstance(engine.meta.get("layers"), list):
        meta["layers"] = engine.meta["layers"]
    return replace(run, meta=meta, samples=mine(run.samples), layer_samples=mine(run.layer_samples),
                   epochs=mine(run.epochs), actions=mine(run.actions), findings=mine(run.findings),
                   other=mine(run.other))


# ----------------------------------------------------------------------------------------------------
# what heal did to the curve
# ----------------------------------------------------------------------------------------------------
def undone_ranges(run: RunData) -> list[tuple[float, float]]:
    """``(to_step, step)`` of every rollback: the losses of steps ``to_step < s <= step`` were measured on
    weights that the rollback threw away (the snapshot ``to_step`` holds the weights before that step)."""
    out = []
    for a in run.actions:
        if a.get("action") == "rollback":
            to, at = num(a.get("to_step")), step_of(a)
            if math.isfinite(to) and math.isfinite(at) and at > to:
                out.append((to, at))
    return out


def undone(step: float, ranges: list[tuple[float, float]]) -> bool:
    return any(to < step <= at for to, at in ranges)


def kept_epoch_means(run: RunData) -> tuple[list[tuple[float, float]], bool]:
    """The training loss of each epoch, without the steps a rollback undid; and whether any epoch changed.

    An epoch that no rollback touched keeps the engine's exact mean (``train_loss``); one that a rollback
    touched is recomputed from the loss samples it kept (a subsample once the curve is downsampled), and
    left out when none is left.
    """
    ranges = undone_ranges(run)
    epochs = sorted((e for e in run.epochs if math.isfinite(step_of(e))), key=step_of)
    out: list[tuple[float, float]] = []
    changed = False
    start = -math.inf
    for e in epochs:
        end = step_of(e)
        touched = any(to < end and at >= start for to, at in ranges)
        if not touched:
            value = num(e.get("train_loss"))
        else:
            changed = True
            kept = [num(s.get("loss")) for s in run.samples
                    if start <= step_of(s) < end and not undone(step_of(s), ranges)]
            kept = [v for v in kept if math.isfinite(v)]
            value = sum(kept) / len(kept) if kept else math.nan
        if math.isfinite(value):
            out.append((end, value))
        start = end
    return out, changed


def epoch_end_step(run: RunData, epoch: Any) -> float:
    """The step at which ``epoch`` ended (where its evaluation was taken); NaN when unknown."""
    for e in run.epochs:
        if e.get("epoch") == epoch and math.isfinite(step_of(e)):
            return step_of(e)
    return math.nan

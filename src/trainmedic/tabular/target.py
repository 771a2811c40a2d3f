"""Deciding what kind of target a column is, and turning it into arrays a model can train on.

The kinds, and how each is trained and judged:

- ``log-regression``: positive and right-skewed (skew > 1 or max/min > 100) → train on log(y), judge by
  log-RMSE (practitioner note 001, the Kaggle house-price metric).
- ``count``: non-negative integers that look like counts (at least 30 % zeros, or the most frequent value
  is 0 or 1, or zeros occur and the mean is under 10) → Poisson NLL on a log-rate plus a distribution over
  counts (note 000); judged by mean Poisson deviance and held-out negative log-likelihood per row.
  Larger counts without zeros (say around 30) are treated as regression unless ``--task count``.
- ``binary`` / ``multiclass``: two values, text labels, or a few evenly used integer codes → cross-entropy;
  judged by log-loss and accuracy.
- ``regression``: anything else numeric → MSE on the standardized target; judged by RMSE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.errors import UsageError

TASKS = ("regression", "log-regression", "count", "binary", "multiclass")
MAX_CLASSES = 50

METRICS = {
    "regression": "rmse",
    "log-regression": "log_rmse",
    "count": "poisson_deviance",
    "binary": "log_loss",
    "multiclass": "log_loss",
}


@dataclass
class TargetInfo:
    kind: str
    reason: str
    classes: list[Any] = field(default_factory=list)  # classification labels, in code order
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return METRICS[self.kind]


def _numeric(y: pd.Series) -> pd.Series | None:
    """The target as floats if it is numeric (or text that is entirely numbers), else None."""
    if pd.api.types.is_bool_dtype(y):
        return y.astype("float64")
    if pd.api.types.is_numeric_dtype(y):
        return y.astype("float64")
    vals = y.dropna().astype(str).str.strip().str.replace(",", "", regex=False)
    if len(vals) == 0:
        return None
    num = pd.to_numeric(vals, errors="coerce")
    if num.notna().mean() >= 0.95:
        return pd.to_numeric(y.astype(str).str.strip().str.replace(",", "", regex=False), errors="coerce")
    return None


def describe_numeric(v: np.ndarray) -> dict[str, Any]:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {}
    s = pd.Series(v)
    out = {
        "n": int(len(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "mean": float(v.mean()),
        "unique": int(s.nunique()),
        "integer": bool(np.all(v == np.round(v))),
        "zero_fraction": float(np.mean(v == 0)),
    }
    out["skew"] = float(s.skew()) if len(v) > 2 else 0.0
    return out


def infer_task(y: pd.Series) -> TargetInfo:
    """Decide the target kind from the data. Raises UsageError when no model can be trained on it."""
    name = y.name
    present = y.dropna()
    if len(present) == 0:
        raise UsageError(f"target column {name!r} has no values; choose a column with labels (--target)")
    num = _numeric(y)
    if num is None:
        n_cls = present.astype(str).nunique()
        if n_cls < 2:
            raise UsageError(f"target column {name!r} has a single value {present.iloc[0]!r}; nothing to learn")
        if n_cls == 2:
            return TargetInfo("binary", "two distinct labels", stats={"classes": n_cls})
        if n_cls <= MAX_CLASSES:
            return TargetInfo("multiclass", f"{n_cls} text labels", stats={"classes": n_cls})
        raise UsageError(
            f"target column {name!r} is text with {n_cls} distinct values: not a number and too many classes "
            f"(> {MAX_CLASSES}); choose a numeric target or pass --task"
        )
    v = num.to_numpy(dtype="float64")
    st = describe_numeric(v)
    if not st:
        raise UsageError(f"target column {name!r} has no finite values; choose a column with labels (--target)")
    if st["unique"] < 2:
        raise UsageError(f"target column {name!r} has a single value {st['min']:g}; nothing to learn")
    if st["unique"] == 2:
        return TargetInfo("binary", "two distinct values", stats=st)
    finite = v[np.isfinite(v)]
    counts = pd.Series(finite).value_counts()
    if st["integer"] and st["min"] >= 0:
        balance = counts.min() / counts.max()
        if st["unique"] <= 20 and balance >= 0.2 and counts.index.max() - counts.index.min() + 1 == st["unique"]:
            return TargetInfo(
                "multiclass",
                f"{st['unique']} evenly used consecutive integer codes (rarest/commonest {balance:.2f})",
                stats=st,
            )
        mode = float(counts.index[0])
        if st["zero_fraction"] >= 0.3 or (mode == st["min"] and st["min"] <= 1) or (
            st["min"] == 0 and st["mean"] < 10
        ):
            return TargetInfo(
                "count",
                f"non-negative integers, {st['zero_fraction']:.0%} zeros, most frequent value {mode:g}",
                stats=st,
            )
    if st["min"] > 0 and (st["skew"] > 1 or st["max"] / st["min"] > 100):
        return TargetInfo(
            "log-regression",
            f"positive and right-skewed (skew {st['skew']:.2f}, max/min {st['max'] / st['min']:.3g})",
            stats=st,
        )
    return TargetInfo("regression", "numeric", stats=st)


def resolve_task(y: pd.Series, task: str | None) -> TargetInfo:
    """The inferred kind, or the user's ``--task`` after checking that the target allows it."""
    if task in (None, "", "auto"):
        return _with_classes(y, infer_task(y))
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    name = y.name
    present = y.dropna()
    if len(present) == 0:
        raise UsageError(f"target column {name!r} has no values; choose a column with labels (--target)")
    if task in ("binary", "multiclass"):
        n_cls = present.astype(str).nunique()
        if n_cls < 2:
            raise UsageError(f"target column {name!r} has a single class {present.iloc[0]!r}; nothing to learn")
        if task == "binary" and n_cls != 2:
            raise UsageError(f"--task binary needs exactly 2 classes; target column {name!r} has {n_cls}")
        if n_cls > MAX_CLASSES:
            raise UsageError(f"target column {name!r} has {n_cls} classes (> {MAX_CLASSES}); use a regression task")
        return _with_classes(y, TargetInfo(task, "given by --task", stats={"classes": n_cls}))
    num = _numeric(y)
    if num is None:
        ex = present.astype(str).iloc[0]
        raise UsageError(
            f"--task {task} needs a numeric target, but column {name!r} is text (e.g. {ex!r}); "
            f"use --task binary/multiclass or fix the column"
        )
    v = num.to_numpy(dtype="float64")
    st = describe_numeric(v)
    if not st or st["unique"] < 2:
        raise UsageError(f"target column {name!r} has fewer than 2 distinct numeric values; nothing to learn")
    if task == "log-regression" and st["min"] <= 0:
        raise UsageError(
            f"--task log-regression needs a positive target, but {name!r} has values <= 0 (min {st['min']:g}); "
            f"use --task regression"
        )
    if task == "count" and (st["min"] < 0 or not st["integer"]):
        raise UsageError(
            f"--task count needs non-negative integers, but {name!r} has "
            f"{'negative' if st['min'] < 0 else 'fractional'} values; use --task regression"
        )
    return TargetInfo(task, "given by --task", stats=st)


def _with_classes(y: pd.Series, info: TargetInfo) -> TargetInfo:
    if info.kind in ("binary", "multiclass"):
        present = y.dropna()
        num = _numeric(y)
        if num is not None:
            vals = sorted(pd.unique(num.dropna()))
            info.classes = [_plain(v) for v in vals]
        else:
            info.classes = sorted(present.astype(str).unique().tolist())
    return info


def _plain(v: float) -> Any:
    return int(v) if float(v).is_integer() else float(v)


def target_array(y: pd.Series, info: TargetInfo) -> tuple[np.ndarray, np.ndarray]:
    """(values, usable-row mask). Classification values are class codes 0..C-1 in ``info.classes`` order."""
    if info.kind in ("binary", "multiclass"):
        if not info.classes:
            _with_classes(y, info)
        num = _numeric(y)
        if num is not None and all(isinstance(c, (int, float)) for c in info.classes):
            keys = num.to_numpy(dtype="float64")
            lookup = {float(c): i for i, c in enumerate(info.classes)}
            codes = np.array([lookup.get(k, -1) if np.isfinite(k) else -1 for k in keys])
        else:
            lookup_s = {str(c): i for i, c in enumerate(info.classes)}
            codes = np.array([lookup_s.get(str(k), -1) if pd.notna(k) else -1 for k in y.to_numpy()])
        ok = codes >= 0
        return codes.astype("int64"), ok
    num = _numeric(y)
    v = num.to_numpy(dtype="float64") if num is not None else np.full(len(y), np.nan)
    ok = np.isfinite(v)
    if info.kind == "log-regression":
        ok &= v > 0
    if info.kind == "count":
        ok &= (v >= 0) & (v == np.round(np.where(ok, v, 0)))
    return v, ok

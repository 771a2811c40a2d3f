"""Which columns the models use: LightGBM's split gain and permutation importance on out-of-fold rows.

Gain says what the trees split on, which favours columns with many distinct values. Permutation importance
asks the question that matters: how much worse does the *blend* score on rows it never trained on when one
column's values are shuffled among those rows? For each fold, the fold's own models (never trained on its
validation rows) predict a sample of at most ``max_rows`` validation rows with one column permuted, the
predictions are blended with the fit's weights and scored; the importance is the mean increase of the
judged metric over the folds (a column the models ignore scores about 0; a negative value is noise).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.tabular import blend as B
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular.preprocess import FeatureFrame


def _blend_point(task: str, preds: list[Any], weights: dict[str, np.ndarray]) -> Any:
    if task == "count":
        return np.column_stack(preds) @ weights["mean"], None
    return B.apply_weights(task, preds, weights)


def _point(task: str, pred: Any) -> np.ndarray:
    return pred.mean if task == "count" else np.asarray(pred)


def permutation_importance(task: str, features: FeatureFrame, y: np.ndarray, folds: list[Any],
                           fitted: dict[str, list[Any]], weights: dict[str, np.ndarray], seed: int,
                           max_rows: int = 2000, deadline: float | None = None) -> tuple[dict[str, float], int]:
    """Mean increase of the blend's metric per column, and the number of folds it was measured on (all,
    unless ``deadline``, a ``time.perf_counter()`` value, comes first: the first fold is always measured,
    a later one only when the slowest fold so far would still end before the deadline).

    All the permuted copies of a fold's sample are stacked into one frame, so each model predicts once per
    fold (a fitted preprocessing costs about the same for 300 rows as for 30,000).
    """
    names = list(fitted)
    columns = list(features.numeric) + list(features.categorical) + list(features.text)
    rng = np.random.default_rng(seed)
    gains: dict[str, list[float]] = {c: [] for c in columns}
    slowest = 0.0
    for k, (_, va) in enumerate(folds):
        started = time.perf_counter()
        if k > 0 and deadline is not None and started + slowest > deadline:
            break  # the next fold would end past the deadline: stop before it, not after it
        rows = va if len(va) <= max_rows else np.sort(rng.choice(va, max_rows, replace=False))
        X = subset_frame(features, rows).X.reset_index(drop=True)
        perm = rng.permutation(len(rows))
        copies = [X]
        for c in columns:
            shuffled = X.copy()
            shuffled[c] = X[c].to_numpy()[perm]
            copies.append(shuffled)
        stacked = FeatureFrame(pd.concat(copies, ignore_index=True), features.numeric, features.categorical,
                               text=features.text)
        preds = [_point(task, fitted[n][k].predict(stacked)) for n in names]
        m = len(rows)
        scores = []
        for j in range(len(copies)):
            part = _blend_point(task, [p[j * m:(j + 1) * m] for p in preds], weights)
            scores.append(next(iter(B.score(task, part, y[rows]).values())))
        for j, c in enumerate(columns, start=1):
            gains[c].append(scores[j] - scores[0])
        slowest = max(slowest, time.perf_counter() - started)
    return {c: float(np.mean(v)) for c, v in gains.items()}, len(next(iter(gains.values()), []))


def lightgbm_gain(features: FeatureFrame, models: list[Any]) -> dict[str, float] | None:
    """Each column's share of the total split gain, averaged over folds (native categorical columns only)."""
    columns = list(features.numeric) + list(features.categorical)
    if features.text:
        return None  # the text columns' SVD components and score are not columns of the table
    shares = []
    for m in models:
        for booster in m.boosters:
            g = np.asarray(booster.feature_importance(importance_type="gain"), dtype="float64")
            if len(g) != len(columns) or g.sum() <= 0:
                return None
            shares.append(g / g.sum())
    if not shares:
        return None
    mean = np.mean(shares, axis=0)
    return {c: float(v) for c, v in zip(columns, mean, strict=True)}


def importance_document(task: str, features: FeatureFrame, y: np.ndarray, res: dict[str, Any],
                        seed: int, deadline: float | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    perm, folds_used = permutation_importance(task, features, y, res["folds"], res["fitted"], res["weights"],
                                              seed, deadline=deadline)
    doc: dict[str, Any] = {
        "permutation": dict(sorted(perm.items(), key=lambda kv: -kv[1])),
        "permutation_note": "mean increase of the blend's judged metric on out-of-fold rows (at most 2000 a "
                            "fold) when the column is shuffled; about 0: unused",
        "permutation_folds": folds_used,
    }
    if "lightgbm" in res["fitted"]:
        gain = lightgbm_gain(features, res["fitted"]["lightgbm"])
        if gain is not None:
            doc["lightgbm_gain"] = dict(sorted(gain.items(), key=lambda kv: -kv[1]))
    doc["time_s"] = round(time.perf_counter() - t0, 2)
    return doc


__all__ = ["importance_document", "lightgbm_gain", "permutation_importance"]

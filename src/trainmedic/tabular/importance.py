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

from trainmedic.tabular import blend as B
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular.preprocess import FeatureFrame


def _blend_point(task: str, preds: list[Any], weights: dict[str, np.ndarray]) -> Any:
    if task == "count":
        means = [p.mean for p in preds]
        return np.column_stack(means) @ weights["mean"], None
    return B.apply_weights(task, preds, weights)


def permutation_importance(task: str, features: FeatureFrame, y: np.ndarray, folds: list[Any],
                           fitted: dict[str, list[Any]], weights: dict[str, np.ndarray], seed: int,
                           max_rows: int = 2000, deadline: float | None = None) -> tuple[dict[str, float], int]:
    """Mean increase of the blend's metric per column, and the number of folds it was measured on (all,
    unless ``deadline``, a ``time.perf_counter()`` value, passed: it stops after the fold that crosses it)."""
    names = list(fitted)
    columns = list(features.numeric) + list(features.categorical)
    rng = np.random.default_rng(seed)
    gains: dict[str, list[float]] = {c: [] for c in columns}
    for k, (_, va) in enumerate(folds):
        rows = va if len(va) <= max_rows else np.sort(rng.choice(va, max_rows, replace=False))
        X = subset_frame(features, rows)
        models = [fitted[n][k] for n in names]

        def judged(frame: FeatureFrame, models: list[Any] = models, rows: np.ndarray = rows) -> float:
            pred = _blend_point(task, [m.predict(frame) for m in models], weights)
            return next(iter(B.score(task, pred, y[rows]).values()))

        base = judged(X)
        perm = rng.permutation(len(rows))
        for c in columns:
            shuffled = X.X.copy()
            shuffled[c] = X.X[c].to_numpy()[perm]
            gains[c].append(judged(FeatureFrame(shuffled, X.numeric, X.categorical)) - base)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return {c: float(np.mean(v)) for c, v in gains.items()}, len(next(iter(gains.values()), []))


def lightgbm_gain(features: FeatureFrame, models: list[Any]) -> dict[str, float] | None:
    """Each column's share of the total split gain, averaged over folds (native categorical columns only)."""
    columns = list(features.numeric) + list(features.categorical)
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

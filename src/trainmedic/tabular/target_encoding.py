"""Smoothed target means of the categorical columns, as extra columns for the linear regression model.

The one-hot encoding gives every category its own coefficient, and the lasso shrinks the coefficients of
rare categories towards zero (the overall mean); a category's smoothed mean target is one column that
orders all the categories at once, so "this neighbourhood is expensive" costs the lasso one coefficient
instead of twenty. Each value is ``(sum of y in the category + m * overall mean) / (count + m)``.

Leak-free: on the training rows every row's value comes from the other folds of a 5-fold split of those
rows (a row never sees its own target); validation and new rows get the means of all the training rows; a
category unseen in training gets the overall mean. The columns are standardized on the training rows.
``to_dict`` / ``from_dict`` store the means as plain numbers for ``fit --save``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


class TargetMeans:
    """Cross-fitted smoothed target means of each categorical column (``smoothing`` = m pseudo-rows)."""

    def __init__(self, columns: list[str], smoothing: float = 10.0, folds: int = 5, seed: int = 0) -> None:
        self.columns = list(columns)
        self.smoothing = smoothing
        self.folds = folds
        self.seed = seed
        self.prior = 0.0
        self.means: dict[str, dict[str, float]] = {}
        self.mean = np.zeros(0)
        self.scale = np.zeros(0)

    def _map(self, values: np.ndarray, y: np.ndarray) -> dict[str, float]:
        g = pd.DataFrame({"c": values.astype(str), "y": y}).groupby("c")["y"].agg(["sum", "count"])
        m = self.smoothing
        return {str(k): float(v) for k, v in ((g["sum"] + m * self.prior) / (g["count"] + m)).items()}

    def _apply(self, X: pd.DataFrame, means: dict[str, dict[str, float]]) -> np.ndarray:
        out = np.empty((len(X), len(self.columns)))
        for j, c in enumerate(self.columns):
            mp = means[c]
            out[:, j] = [mp.get(v, self.prior) for v in X[c].astype(str).to_numpy()]
        return out

    def fit_transform(self, X: pd.DataFrame, y: np.ndarray) -> np.ndarray:
        """The training rows' cross-fitted columns (standardized); the all-rows means kept for new rows."""
        from sklearn.model_selection import KFold

        y = np.asarray(y, dtype="float64")
        self.prior = float(np.mean(y)) if len(y) else 0.0
        raw = np.full((len(X), len(self.columns)), self.prior)
        if len(y) >= 2 * self.folds:
            for a, b in KFold(self.folds, shuffle=True, random_state=self.seed).split(raw):
                part = {c: self._map(X[c].to_numpy()[a], y[a]) for c in self.columns}
                raw[b] = self._apply(X.iloc[b], part)
        self.means = {c: self._map(X[c].to_numpy(), y) for c in self.columns}
        self.mean = raw.mean(axis=0)
        sd = raw.std(axis=0)
        self.scale = np.where(sd > 1e-9 * (1.0 + np.abs(self.mean)), sd, 1.0)  # a constant column stays 0
        return (raw - self.mean) / self.scale

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return (self._apply(X, self.means) - self.mean) / self.scale

    # ---- stored form (fit --save) ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "smoothing": self.smoothing, "prior": self.prior, "means": self.means,
                "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetMeans:
        out = cls(list(d["columns"]), float(d["smoothing"]))
        out.prior = float(d["prior"])
        out.means = {c: {str(k): float(v) for k, v in mp.items()} for c, mp in d["means"].items()}
        out.mean = np.asarray(d["mean"], dtype="float64")
        out.scale = np.asarray(d["scale"], dtype="float64")
        return out


__all__ = ["TargetMeans"]

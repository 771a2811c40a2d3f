"""Cubic B-spline columns of the numeric columns, for the linear regression model.

A lasso on the prepared columns fits one straight line per column; house prices rise with the living area
faster at the top of the range than at the bottom, and a year built matters more for recent houses than for
old ones. A cubic B-spline basis of a column (7 columns for 5 knots: ``n_knots + degree - 1``) lets the lasso
fit a smooth curve instead, still a linear model in its coefficients; the straight-line column stays beside
its basis, so the lasso can keep the line and spend coefficients on the bends only where they help.

The basis is the one of ``sklearn.preprocessing.SplineTransformer(n_knots=5, degree=3, knots="quantile")``
(default ``extrapolation="constant"``): knots at the training rows' 0, 25, 50, 75, 100 % quantiles, three
more knots spaced like the first / last two beyond each end, the basis functions evaluated with
scipy's ``BSpline`` inside the knots and held at their boundary values outside. It is computed here rather
than by SplineTransformer so that the fitted form is a few numbers per column (the knot vectors and the
columns' mean and scale) that ``fit --save`` writes as JSON and ``predict`` evaluates without pickle;
``tests/tabular/test_splines.py`` checks the columns equal SplineTransformer's.

Only columns with more than ``min_distinct`` distinct training values get a basis (indicators, one-hot and
small counts gain nothing from a curve), and everything is learnt on the fold's training rows. Input is
the prepared matrix (imputed, log1p of skewed columns, winsorized, standardized): a B-spline basis with
quantile knots is unchanged by a column's increasing affine map, so the standardization does not alter it,
and the winsorizing keeps a new row inside the training knots.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.interpolate import BSpline


class SplineBasis:
    """Adds standardized cubic B-spline basis columns of chosen columns of a matrix (after all of its own)."""

    def __init__(self, n_knots: int = 5, degree: int = 3, min_distinct: int = 6) -> None:
        self.n_knots = n_knots
        self.degree = degree
        self.min_distinct = min_distinct
        self.columns = np.zeros(0, dtype=int)
        self.knots = np.zeros((0, n_knots + 2 * degree))  # one extended knot vector per expanded column
        self.mean = np.zeros(0)
        self.scale = np.zeros(0)

    @property
    def n_splines(self) -> int:
        return self.n_knots + self.degree - 1

    def _knot_vectors(self, X: np.ndarray) -> np.ndarray:
        """SplineTransformer's knots: base knots at quantiles, ``degree`` more beyond each end."""
        d = self.degree
        base = np.nanpercentile(X, 100 * np.linspace(0, 1, self.n_knots, dtype=np.float64), axis=0)
        dist_min, dist_max = base[1] - base[0], base[-1] - base[-2]
        knots = np.r_[np.linspace(base[0] - d * dist_min, base[0] - dist_min, num=d), base,
                      np.linspace(base[-1] + dist_max, base[-1] + d * dist_max, num=d)]
        return knots.T  # (columns, n_knots + 2 * degree)

    def _basis(self, A: np.ndarray) -> np.ndarray:
        """The raw (unstandardized) basis columns of ``A``'s expanded columns, column after column."""
        d, m = self.degree, self.n_splines
        out = np.zeros((len(A), len(self.columns) * m))
        coef = np.eye(m, dtype=np.float64)
        for i, (j, t) in enumerate(zip(self.columns, self.knots, strict=True)):
            spl = BSpline.construct_fast(np.ascontiguousarray(t), coef, d, extrapolate=False)
            x = A[:, j]
            lo, hi = t[d], t[-d - 1]
            block = out[:, i * m:(i + 1) * m]
            inside = (lo <= x) & (x <= hi)
            block[inside] = spl(x[inside])
            # constant beyond the knots: the first / last ``degree`` functions keep their boundary values
            below, above = x < lo, x > hi
            if below.any():
                block[np.ix_(below, np.arange(d))] = spl(lo)[:d]
            if above.any():
                block[np.ix_(above, np.arange(m - d, m))] = spl(hi)[-d:]
        return out

    def fit(self, A: np.ndarray, columns: Iterable[int] | None = None) -> SplineBasis:
        """Knots and scale from the training rows ``A``; ``columns``: candidates (all of ``A``'s if None)."""
        A = np.asarray(A, dtype="float64")
        cand = range(A.shape[1]) if columns is None else columns
        keep = [j for j in cand if np.unique(A[:, j]).size > self.min_distinct] if len(A) >= 2 else []
        self.columns = np.asarray(keep, dtype=int)
        if not keep:
            return self
        self.knots = self._knot_vectors(A[:, self.columns])
        S = self._basis(A)
        self.mean = S.mean(axis=0)
        sd = S.std(axis=0)
        self.scale = np.where(sd > 1e-12, sd, 1.0)  # a basis function no training row reaches stays 0
        return self

    def transform(self, A: np.ndarray) -> np.ndarray:
        """``A`` with the standardized basis columns after it (``A`` unchanged when nothing is expanded)."""
        A = np.asarray(A, dtype="float64")
        if len(self.columns) == 0:
            return A
        return np.hstack([A, (self._basis(A) - self.mean) / self.scale])

    def fit_transform(self, A: np.ndarray, columns: Iterable[int] | None = None) -> np.ndarray:
        return self.fit(A, columns).transform(A)

    # ---- stored form (fit --save) ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"n_knots": self.n_knots, "degree": self.degree, "min_distinct": self.min_distinct,
                "columns": [int(v) for v in self.columns], "knots": [[float(v) for v in t] for t in self.knots],
                "mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplineBasis:
        out = cls(int(d["n_knots"]), int(d["degree"]), int(d["min_distinct"]))
        out.columns = np.asarray(d["columns"], dtype=int)
        out.knots = np.asarray(d["knots"], dtype="float64").reshape(len(out.columns), out.n_knots + 2 * out.degree)
        out.mean = np.asarray(d["mean"], dtype="float64")
        out.scale = np.asarray(d["scale"], dtype="float64")
        return out


__all__ = ["SplineBasis"]

"""``fit --select``: feature selection that is itself cross-validated, and kept only when it helps.

Note 002 picked features with a random forest on all rows and then cross-validated the models on the picked
features: the choice had seen every validation row, so its score was flattered. Here the selection is one
more step fitted inside each fold, on that fold's training rows only, and is judged before it is used:

1. the fold's training rows are split as the models split them (inner-train / inner-validation rows);
2. on a 3-fold split of the inner-train rows, a LightGBM probe is fitted on two parts and each column's
   *permutation importance* is measured on the third (how much worse the probe gets when the column is
   shuffled); columns whose importance, averaged over the parts, is not above zero are the candidates;
3. the probes (LightGBM, and the linear model when the fit has one) are fitted with and without the
   candidates, and scored on the inner-validation rows, which took no part in choosing the candidates;
4. the candidates are dropped for this fold only if that improves the probes' summed inner score;
   otherwise every column is kept. The outer validation fold is never looked at.

``cv.json`` (``selection``) lists per fold the columns dropped, the inner scores with and without them, and
whether the selection was kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.tabular.models import subset_frame
from trainmedic.tabular.preprocess import FeatureFrame

# The LightGBM probe's learning rate and early-stopping patience. The probe ranks columns and judges the
# selection; it does not score the fit. At fit's own rate (0.01 up to 10k rows, patience 300, up to 8,000
# rounds) the 5 probe fits a fold and predicting the shuffled copies through their trees took 190 s of a
# 195 s selection (noise_columns, seed 0, fold 0). At 0.05 with patience 100 (500 rounds at 0.01's pace,
# more than the 300 it had) the same fold took 26 s; on the five folds of noise_columns seed 0 the same
# folds were kept (5 of 5), no useful column was a candidate, and a fold had 28-37 candidates (30-35
# before). 0.1 with patience 50 was faster again but turned fold 2's judgement (kept before, not kept at
# 0.1: the judgement is a difference of two inner scores, noisier with coarser trees).
PROBE_LEARNING_RATE = 0.05
PROBE_PATIENCE = 100
PROBE_MAX_ROUNDS = 2000


def probe_config(gbm: Any, rows: int) -> Any:
    """The probe's LightGBM settings from the fit's (a :class:`~trainmedic.tabular.models.GBMConfig`) for a
    fold of ``rows`` training rows: one model, early stopping on its own split (as a ``--search`` trial), at
    :data:`PROBE_LEARNING_RATE` unless the fit's own rate on that many rows is higher."""
    from dataclasses import replace

    lr = max(gbm.rate(rows), PROBE_LEARNING_RATE)
    return replace(gbm, bags=1, single_split_rows=0, learning_rate=lr, large_early_stopping=PROBE_PATIENCE,
                   max_rounds=min(gbm.max_rounds, PROBE_MAX_ROUNDS))


def keep_columns(ff: FeatureFrame, columns: list[str]) -> FeatureFrame:
    """The frame with only ``columns`` used as features (the rows and the other columns stay in ``X``, so
    the models' fitted preprocessing picks its columns by name from any frame with the training columns)."""
    keep = set(columns)
    return FeatureFrame(ff.X, [c for c in ff.numeric if c in keep], [c for c in ff.categorical if c in keep],
                        ff.dropped, ff.converted, ff.dates, [c for c in ff.text if c in keep])


def feature_columns(ff: FeatureFrame) -> list[str]:
    return list(ff.numeric) + list(ff.categorical) + list(ff.text)


@dataclass
class Selection:
    """One fold's selection."""

    dropped: list[str]  # the candidates: importance not above zero on the probe's stopping rows
    kept: bool  # True: the candidates are left out of this fold's models
    score_all: float  # the probes' summed inner-validation score with every column
    score_selected: float  # ... and without the candidates
    importance: dict[str, float]
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        def r(v: float) -> float | None:
            return round(float(v), 6) if math.isfinite(v) else None

        return {"dropped": self.dropped if self.kept else [], "candidates": self.dropped, "kept": self.kept,
                "inner_score_all": r(self.score_all), "inner_score_selected": r(self.score_selected),
                "time_s": round(self.time_s, 2)}


def _permutation(probe: Any, X: FeatureFrame, y: np.ndarray, score: Callable[[Any, np.ndarray], float],
                 rng: np.random.Generator, repeats: int) -> dict[str, float]:
    """Mean increase of ``score`` per column when it is shuffled; all copies predicted at once."""
    cols = feature_columns(X)
    base = X.X.reset_index(drop=True)
    copies, owners = [base], [None]
    for _ in range(repeats):
        perm = rng.permutation(len(base))
        for c in cols:
            shuffled = base.copy()
            shuffled[c] = base[c].to_numpy()[perm]
            copies.append(shuffled)
            owners.append(c)
    stacked = FeatureFrame(pd.concat(copies, ignore_index=True), X.numeric, X.categorical, text=X.text)
    pred = probe.predict(stacked)
    pred = np.asarray(getattr(pred, "mean", pred)) if not isinstance(pred, np.ndarray) else pred  # counts: the mean
    m = len(base)

    def part(j: int) -> Any:
        return pred[j * m:(j + 1) * m]

    s0 = score(part(0), y)
    gains: dict[str, list[float]] = {c: [] for c in cols}
    for j in range(1, len(copies)):
        gains[owners[j]].append(score(part(j), y) - s0)
    return {c: float(np.mean(v)) for c, v in gains.items()}


def select_features(
    X: FeatureFrame,
    y: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray],
    *,
    probes: list[Callable[[], Any]],
    split: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    score: Callable[[Any, np.ndarray], float],
    seed: int,
    parts: int = 3,
    repeats: int = 2,
) -> Selection:
    """Choose, on a fold's training rows ``X``/``y`` only, which columns to leave out (see the module).

    ``probes``: makers of unfitted models; the first is the one whose permutation importance picks the
    candidates (a LightGBM model: fast, and it ignores a useless column rather than fitting it).
    ``split(y)`` gives a probe its own early-stopping split of the rows it is fitted on.
    """
    from sklearn.model_selection import KFold

    t0 = time.perf_counter()
    itr, iva = inner
    Xa, ya = subset_frame(X, itr), y[itr]
    Xb, yb = subset_frame(X, iva), y[iva]
    cols = feature_columns(X)
    rng = np.random.default_rng(seed)
    # candidates: importance on each held-out part of a K-fold split of the inner-train rows, averaged
    per_part: list[dict[str, float]] = []
    for fit_rows, held in KFold(parts, shuffle=True, random_state=seed % (2**31)).split(itr):
        probe = probes[0]().fit(subset_frame(Xa, fit_rows), ya[fit_rows], split(ya[fit_rows]))
        per_part.append(_permutation(probe, subset_frame(Xa, held), ya[held], score, rng, repeats))
    importance = {c: float(np.mean([d[c] for d in per_part])) for c in cols}
    candidates = [c for c in cols if not importance[c] > 0.0]
    if not candidates or len(candidates) == len(cols):
        return Selection(candidates, False, math.nan, math.nan, importance, time.perf_counter() - t0)
    # the judgement: probes with and without the candidates, on rows that took no part in choosing them
    reduced = keep_columns(X, [c for c in cols if c not in candidates])
    Xa_sel, Xb_sel = subset_frame(reduced, itr), subset_frame(reduced, iva)
    stop = split(ya)
    s_all = s_sel = 0.0
    for make in probes:
        s_all += score(make().fit(Xa, ya, stop).predict(Xb), yb)
        s_sel += score(make().fit(Xa_sel, ya, stop).predict(Xb_sel), yb)
    kept = bool(s_sel < s_all)
    return Selection(candidates, kept, s_all, s_sel, importance, time.perf_counter() - t0)


def summary(selections: list[Selection]) -> dict[str, Any]:
    """cv.json's ``selection``: per fold, and the columns dropped in every fold where selection was kept."""
    kept = [s for s in selections if s.kept]
    always = sorted(set.intersection(*[set(s.dropped) for s in kept])) if kept else []
    return {
        "per_fold": [s.to_dict() for s in selections],
        "folds_kept": len(kept),
        "dropped_in_every_kept_fold": always,
        "note": "chosen in each fold on its training rows only: candidates by permutation importance of a LightGBM "
                "probe, kept only when the probes score better without them on the fold's inner validation rows",
    }


__all__ = ["PROBE_LEARNING_RATE", "Selection", "feature_columns", "keep_columns", "probe_config", "select_features",
           "summary"]

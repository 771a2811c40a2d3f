"""Pure statistics of training curves: numbers in, numbers out, no torch.

The run-time rules judge a curve against its *own* noise and trend rather than against fixed relative
margins, so that a validation bump inside the curve's scatter, or a lone outlier on a tiny absolute scale,
is not reported. These functions are shared by the detectors (:mod:`trainmedic.rules.runtime`) and by
anyone else who must reach the same conclusion from the same numbers (heal's early stop on TM309 can call
:func:`overfitting_evidence` on the evaluations it holds).

* :func:`theil_sen` — the median of pairwise slopes: one wild evaluation cannot tilt it (breakdown 29 %).
* :func:`curve_noise` — the scatter of a curve around its local trend, from the median absolute second
  difference (a straight or gently bending trend has second differences near 0; independent noise of
  standard deviation s gives second differences of standard deviation s*sqrt(6)).
* :func:`curve_resolution` — the noise floor of a quantized curve (an error rate over a small set).
* :func:`overfitting_evidence` — the TM309 statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826  # sigma of normal data = 1.4826 * median absolute deviation


def theil_sen(y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of ``y`` against 0..n-1 by Theil-Sen: median of pairwise slopes, then the
    median of the residual intercepts. Needs at least 2 values."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    i, j = np.triu_indices(n, k=1)
    slope = float(np.median((y[j] - y[i]) / (j - i)))
    intercept = float(np.median(y - slope * np.arange(n)))
    return slope, intercept


def curve_noise(y: np.ndarray) -> float:
    """Robust standard deviation of ``y`` around its local trend (from second differences); 0 for fewer
    than 3 values."""
    y = np.asarray(y, dtype=float)
    if len(y) < 3:
        return 0.0
    d2 = y[2:] - 2.0 * y[1:-1] + y[:-2]
    return MAD_TO_SIGMA * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6.0)


def curve_resolution(y: np.ndarray) -> float:
    """The noise floor of a quantized curve (0 for one that is not): an error rate counted over a small
    validation set moves in steps of 1/n and sits on one value for many evaluations.

    Quantized: at least a quarter of consecutive evaluations repeat the value exactly (a loss computed in
    floating point never does). The step ``q`` is the smallest gap between distinct values. On such a curve
    most second differences are exactly 0 and :func:`curve_noise` reads no noise at all: a single example
    flipping looked like a rise of 10^27 noise units (a graph network's validation error over 180 nodes,
    ``benchmarks/fresh3`` gnn_message: TM309 on both healthy seeds). The floor is the step, and for a rate
    (every value in [0, 1]) the binomial standard error of the best value on ``1/q`` examples: with 180
    nodes at 6 % error that is 0.018, three nodes, and a rise of a few nodes is the validation set's own
    sampling noise, not the model getting worse."""
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if len(y) < 5 or np.mean(y[1:] == y[:-1]) < 0.25:
        return 0.0
    u = np.unique(y)
    if len(u) < 2:
        return 0.0
    q = float(np.min(np.diff(u)))
    if u[0] < 0 or u[-1] > 1:
        return q
    p = max(float(u[0]), q)
    return max(q, math.sqrt(p * (1 - p) * q))


@dataclass(frozen=True)
class OverfitEvidence:
    """What the TM309 statistic measured; ``overfitting`` is the verdict."""

    overfitting: bool
    best_index: int
    waited: int  # evaluations since the best
    slope: float  # Theil-Sen slope of the validation values from the best on, per evaluation
    rise: float  # the trend's rise since the best: slope * waited
    noise: float  # the validation curve's own scatter (whole curve, second differences)
    residual: float  # scatter of the values since the best around their Theil-Sen line
    t_slope: float  # slope / its standard error (from ``residual``)
    recovering: bool  # the last evaluations come back down towards the best
    train_gain: float  # relative fall of the training loss since the best evaluation
    median_rise: float = 0.0  # the median of the values since the best, less the best

    def as_dict(self) -> dict[str, float | int | bool]:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def overfitting_evidence(val: np.ndarray, train: np.ndarray, *, patience: int = 4, margin: float = 0.05,
                         train_gain: float = 0.1, z: float = 3.0, t_min: float = 2.0) -> OverfitEvidence:
    """Is the validation loss rising beyond its own noise and trend while training improves?

    All of these must hold:

    * at least ``patience`` evaluations since the best (lowest) validation value;
    * the Theil-Sen slope of the values from the best on is positive, and significant against their own
      scatter around that line (``t_min`` standard errors);
    * the trend's rise since the best exceeds ``z`` times the whole curve's scatter and ``margin`` of the
      best value (a relative floor: a rise of 0.1 % is not worth a warning however smooth the curve);
    * most evaluations since the best sit above it: their median exceeds the best by one noise unit. Theil-Sen
      tolerates a minority of outliers only up to its breakdown point (29 %): on a short window two high
      evaluations after a flat stretch make a significant slope (a two-headed MLP written apart from the
      rules, ``benchmarks/fresh/multitask.py`` seed 1: median 0.24 noise units above the best, the next
      evaluation a new best), where a memorising network's values since its best all rose (the zoo's: 7.1);
    * the last evaluations are not coming back down: the last value is above the median of the values
      since the best and above the value before it minus one noise unit (a bump that recedes is not
      overfitting);
    * the training loss fell by ``train_gain`` (relative) since the best evaluation.
    """
    val = np.asarray(val, dtype=float)
    train = np.asarray(train, dtype=float)
    n = len(val)
    nothing = OverfitEvidence(False, int(np.argmin(val)) if n else 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, False, 0.0)
    if n <= patience or not np.all(np.isfinite(val)):
        return nothing
    b = int(np.argmin(val))
    waited = n - 1 - b
    if waited < patience:
        return OverfitEvidence(False, b, waited, 0.0, 0.0, 0.0, 0.0, 0.0, False, 0.0)
    post = val[b:]
    slope, intercept = theil_sen(post)
    x = np.arange(len(post))
    resid = post - (intercept + slope * x)
    residual = MAD_TO_SIGMA * float(np.median(np.abs(resid - np.median(resid))))
    noise = max(curve_noise(val), curve_resolution(val))
    scale = max(residual, noise, 1e-12 * max(abs(float(val[b])), 1e-12))
    se = scale / math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    t_slope = slope / se
    rise = slope * waited
    median_rise = float(np.median(post[1:])) - float(val[b])
    recovering = bool(val[-1] <= float(np.median(post[1:])) or val[-1] < val[-2] - noise)
    gain = float(train[b] - train[-1]) / max(abs(float(train[b])), 1e-12) if len(train) == n else 0.0
    verdict = (slope > 0 and t_slope >= t_min and rise > z * noise and rise > margin * abs(float(val[b]))
               and median_rise > noise and not recovering and gain > train_gain)
    return OverfitEvidence(bool(verdict), b, waited, slope, rise, noise, residual, t_slope, recovering, gain,
                           median_rise)

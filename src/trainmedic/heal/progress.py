"""Is the run making progress? Pure checks on recorded curves (numbers in, a verdict or None out).

Three questions heal must answer from evidence rather than from fixed ratios:

* :func:`not_learning` - has the training loss stayed at the level of a network that learned nothing (its
  starting level, or the loss of the best constant prediction) for a whole window, with no downward trend
  beyond its own noise? A rate far too high often does this without ever turning non-finite (Adam at 30x
  its tuned rate sits at the uniform-prediction level; issue 12). A rate too low does it too, but with a
  steady downward trend, which this check reads and leaves alone.
* :func:`dead_gradients` - has the first weight layer's gradient been *exactly* zero for several steps? After
  a blow-up every ReLU can be off: no gradient reaches the first layer and the run cannot recover by
  itself. This is death, not "vanishing" (a 0/0 ratio): the repair is a rollback, not an init change.
* :func:`rose_after_change` - did the loss level rise, beyond its noise, after the loop raised the
  learning rate? A x30 jump under Adam doubles the loss without the spike a divergence detector waits for.
* :func:`overfitting` - has the validation loss risen beyond the curve's own noise *and* trend since its
  best, for ``patience`` evaluations, while the training loss improved? A transient bump, or the zigzag of
  a rate that is too high, does not qualify (issues 11 and 12).

Noise is measured on the curve itself: for a curve that is locally linear plus independent noise of
standard deviation sigma, second differences ``v[i-1] - 2 v[i] + v[i+1]`` have standard deviation
``sqrt(6) sigma`` (first differences of the per-step loss: ``sqrt(2) sigma``), and the median absolute
deviation makes the estimate robust to the few points where the trend bends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAD_TO_SIGMA = 1.4826  # for normal data, sigma = 1.4826 * MAD
SE_MEDIAN = 1.2533  # the standard error of a median is sqrt(pi/2) sigma / sqrt(n)


@dataclass(frozen=True)
class Verdict:
    kind: str  # "not-learning", "dead-gradients", "overfitting"
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _mad_sigma(d: np.ndarray) -> float:
    return float(MAD_TO_SIGMA * np.median(np.abs(d - np.median(d)))) if len(d) else 0.0


def step_noise(losses: Sequence[float]) -> float:
    """Standard deviation of per-step loss noise, from first differences (robust to a slow trend)."""
    x = np.asarray(losses, dtype=float)
    return _mad_sigma(np.diff(x)) / math.sqrt(2) if len(x) > 2 else 0.0


def curve_noise(values: Sequence[float]) -> float:
    """Standard deviation of a curve's noise around its local trend, from second differences."""
    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return 0.0
    d2 = x[:-2] - 2 * x[1:-1] + x[2:]
    # The MAD is 0 when most second differences are equal (a perfectly smooth stretch); the RMS of the
    # second differences then still gives a scale, and the smaller of the two ignores the bends.
    mad = _mad_sigma(d2)
    rms = float(np.sqrt(np.mean(d2**2)))
    return (mad if mad > 0 else rms) / math.sqrt(6)


def not_learning(losses: Sequence[float], *, reference: float, window: int = 100, margin: float = 0.05,
                 z: float = 2.0, before: Sequence[float] | None = None) -> Verdict | None:
    """The training loss sat at the no-learning level over the last ``window`` steps, with no downward trend.

    Args:
        losses: finite training losses since the run (re)started at its current rate, oldest first.
        reference: the level a network that learned nothing sits at: the smaller of the loss at the first
            steps and, where known, the loss of the best constant prediction (the entropy of the class
            frequencies for cross-entropy, the target's variance for MSE).
        window: steps judged; fewer steps give no verdict.
        margin: the window's median must not be more than this share below ``reference``.
        z: a drop between the window's halves larger than this many standard errors is progress; a rise
            larger than this many (and than ``margin`` of ``reference``) is a loss still moving: no verdict yet,
            unless ``before`` says the run had not learned for a window already.
        before: the ``window`` losses before these, at the same rate (None: not known, or fewer). Their median
            at the no-learning level or above makes a climb a run that has not learned for two windows,
            judged now, not a transient: a GRU at 100x its rate climbed from 4 to 15 over 200 steps, short
            of TM305's four-fold bound, and a verdict deferred window after window let heal act 140 steps late.
    """
    x = np.asarray([v for v in losses if math.isfinite(v)], dtype=float)[-window:]
    if len(x) < window or not math.isfinite(reference) or reference <= 0:
        return None
    level = float(np.median(x))
    if level < reference * (1 - margin):
        return None
    h = len(x) // 2
    drop = float(np.median(x[:h]) - np.median(x[h:]))
    sigma = step_noise(x)
    se = SE_MEDIAN * sigma * math.sqrt(2 / h)
    if drop > z * se:
        return None  # slow, but going down: a rate too low, not a rate too high
    settled_high = before is not None and len(before) >= window and float(np.median(before)) >= reference * (1 - margin)
    if -drop > z * se and -drop > margin * reference and not settled_high:
        # Still climbing (by more than the noise and than one margin of the reference): the loss is moving, not
        # settled. A rate far too high that settles at the no-learning level is judged by the next window; one
        # that keeps climbing is a divergence (TM305). A healthy run (benchmarks/fresh2/tied_lm.py: SGD with
        # momentum on a tied embedding at its N(0, 1) init) climbs from 5.2 to 8.3 in its first 45 steps and
        # turns at step 50, where this window's halves read 5.7 and 7.5.
        return None
    where = ("above the level of a network that learned nothing" if level > reference * (1 + margin)
             else "at the level of a network that learned nothing")
    return Verdict("not-learning",
                   f"the training loss stayed at {level:.4g} over {len(x)} steps, {where} ({reference:.4g}), "
                   "with no downward trend",
                   {"level": level, "reference": reference, "window": len(x), "drop": drop,
                    "drop_se": se})


def rose_after_change(before: Sequence[float], after: Sequence[float], *, z: float = 3.0,
                      min_rel: float = 0.1) -> Verdict | None:
    """The loss level after a change (the loop raised the learning rate) is above the level before it.

    The medians of the two windows are compared in standard errors of their difference (each window's
    step noise from its first differences), and the rise must also be at least ``min_rel`` of the level
    before: with long windows a tiny shift is significant without mattering.
    """
    a = np.asarray([v for v in before if math.isfinite(v)], dtype=float)
    b = np.asarray([v for v in after if math.isfinite(v)], dtype=float)
    if len(a) < 10 or len(b) < 10:
        return None
    lvl_a, lvl_b = float(np.median(a)), float(np.median(b))
    se = SE_MEDIAN * math.sqrt(step_noise(a) ** 2 / len(a) + step_noise(b) ** 2 / len(b))
    rise = lvl_b - lvl_a
    if rise > z * se and rise > min_rel * abs(lvl_a):
        return Verdict("rose-after-change",
                       f"the loss level rose from {lvl_a:.4g} to {lvl_b:.4g} after the change "
                       f"({rise / se:.0f} standard errors) and stayed there",
                       {"before": lvl_a, "after": lvl_b, "rise_se": se, "window_before": len(a),
                        "window_after": len(b)})
    return None


def dead_gradients(first_layer_norms: Sequence[float], *, steps: int = 10) -> Verdict | None:
    """The first weight layer's gradient norm was exactly zero over the last ``steps`` steps."""
    x = list(first_layer_norms)[-steps:]
    if len(x) < steps or any(v != 0.0 for v in x):
        return None
    return Verdict("dead-gradients",
                   f"the first layer's gradient was exactly zero for {steps} steps in a row: its units are "
                   "dead (every ReLU after it off), nothing reaches it and the run cannot recover by itself",
                   {"steps": steps})


def overfitting(val: Sequence[float], train: Sequence[float], *, patience: int = 3, z: float = 2.0) -> Verdict | None:
    """Validation rose beyond its own noise and trend since its best, for ``patience`` evaluations,
    while training improved.

    The noise sigma of the validation curve is read from its second differences. The rise qualifies when
    (1) the median of the evaluations after the best is more than ``z`` sigma above the best, (2) the
    least-squares slope from the best to now is positive by more than ``z`` standard errors, and (3) the
    last evaluation is itself more than ``z`` sigma above the best; and the training loss fell meanwhile.
    """
    v = np.asarray(val, dtype=float)
    t = np.asarray(train, dtype=float)
    if len(v) < patience + 2 or not np.isfinite(v).all():
        return None
    b = int(np.argmin(v))
    waited = len(v) - 1 - b
    if waited < patience:
        return None
    best = float(v[b])
    sigma = max(curve_noise(v), 1e-3 * abs(best), 1e-12)
    after = v[b + 1:]
    rise = float(np.median(after)) - best
    post = v[b:]
    e = np.arange(len(post), dtype=float)
    e -= e.mean()
    slope = float(np.dot(e, post - post.mean()) / np.dot(e, e))
    slope_se = sigma / math.sqrt(float(np.dot(e, e)))
    train_gain = float(t[b] - t[-1]) if len(t) == len(v) and math.isfinite(t[b]) and math.isfinite(t[-1]) else 0.0
    ev = {"best_epoch": b, "best": best, "last": float(v[-1]), "evaluations_since_best": waited,
          "noise_sigma": sigma, "rise": rise, "slope": slope, "slope_se": slope_se, "train_gain": train_gain}
    if rise > z * sigma and slope > z * slope_se and v[-1] - best > z * sigma and train_gain > 0:
        return Verdict("overfitting",
                       f"validation loss rose from {best:.4g} (evaluation {b}) to {v[-1]:.4g} over {waited} "
                       f"evaluations, {rise / sigma:.1f} noise sigmas and a trend of {slope / slope_se:.1f} "
                       f"standard errors, while the training loss fell by {train_gain:.4g}", ev)
    return None


__all__ = ["Verdict", "curve_noise", "dead_gradients", "not_learning", "overfitting", "rose_after_change",
           "step_noise"]

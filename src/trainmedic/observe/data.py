"""Data checks on the live batches: what the model is fed and what the loss compares it with.

The tabular front end checks a file before training (:mod:`trainmedic.tabular.checks`); these are the same
rules read off the tensors a running script actually passes, where no file exists: non-finite rows in the
inputs (TM101) or targets (TM102), sentinel values far outside the rest of a column (TM109), features on
wildly different scales or far from zero mean (TM108), and a target that a regression loss should not be
fed raw: small counts (TM111, note 000) or a positive skewed quantity (TM112, note 001).

The judges take NumPy arrays and return plain ``(code, message, evidence)`` tuples; :class:`DataSample`
gathers the rows of a few batches (bounded) on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainmedic.preflight import Issue  # one finding-before-a-run type for pre-flight and the live checks

MAX_ROWS = 4096
MAX_COLUMNS = 512
REGRESSION_LOSSES = frozenset({"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"})


def nonfinite_rows(*tensors: Any) -> list[list[int]]:
    """For each tensor, the positions (first dimension) of its rows holding NaN/Inf: one host copy for all."""
    masks, sizes = [], []
    for t in tensors:
        ok = isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() > 0 and t.numel() > 0
        masks.append(~torch.isfinite(t.detach()).reshape(t.shape[0], -1).all(dim=1) if ok else None)
        sizes.append(int(t.shape[0]) if ok else 0)
    present = [m for m in masks if m is not None]
    if not present:
        return [[] for _ in tensors]
    device = present[0].device
    flags = torch.cat([m.to(device) for m in present]).tolist()
    out, i = [], 0
    for m, n in zip(masks, sizes):
        if m is None:
            out.append([])
            continue
        out.append([r for r, bad in enumerate(flags[i:i + n]) if bad])
        i += n
    return out


class DataSample:
    """The rows of the observed batches: 2-D float features and a float target, at most ``MAX_ROWS``."""

    def __init__(self) -> None:
        self.features: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.rows = 0
        self.target_rows = 0

    def add(self, inputs: Any, target: Any) -> None:
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 2 and inputs.is_floating_point() \
                and inputs.shape[1] <= MAX_COLUMNS and self.rows < MAX_ROWS:
            x = inputs.detach().float().cpu().numpy()
            self.features.append(x[: MAX_ROWS - self.rows])
            self.rows += len(self.features[-1])
        if isinstance(target, torch.Tensor) and target.dim() >= 1 and target.numel() and self.target_rows < MAX_ROWS:
            y = target.detach().float().cpu().reshape(-1).numpy() if target.dim() == 1 or \
                (target.dim() == 2 and target.shape[1] == 1) else None
            if y is not None:
                self.targets.append(y[: MAX_ROWS - self.target_rows])
                self.target_rows += len(self.targets[-1])

    def feature_matrix(self) -> np.ndarray | None:
        return np.concatenate(self.features) if self.features else None

    def target_vector(self) -> np.ndarray | None:
        return np.concatenate(self.targets) if self.targets else None

    def distinct(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The features and the target with repeated rows kept once: a loop that feeds the whole training set
        at every step (full-batch L-BFGS or Rprop) shows each row once a step, and one real outlier row seen
        on three steps is not a value "repeated 3 times" (TM109 read it so on a held-out script,
        benchmarks/fresh3 rprop_breast). Where features and target have as many rows, a row is the pair (the
        same target on different inputs stays counted); otherwise each is deduplicated alone."""
        x, y = self.feature_matrix(), self.target_vector()
        if x is not None and y is not None and len(x) == len(y):
            both = np.unique(np.column_stack([x, y]), axis=0)
            return both[:, :-1], both[:, -1]
        return (np.unique(x, axis=0) if x is not None else None), y


def _robust_sigma(x: np.ndarray) -> float:
    """The MAD scale; where more than half the values are one value (a sparse pixel or count column) the MAD
    is 0 and the whole range of the values stands in: the standard deviation of a mostly-constant column is
    tiny, and every rare value would then look like a sentinel."""
    s = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return s if s > 0 else float(np.max(x) - np.min(x))


#: the usual codes for "missing": ``once=True`` accepts one of them seen a single time
CONVENTIONAL_SENTINELS = frozenset({-99.0, -999.0, -9999.0, -99999.0, 999.0, 9999.0, 99999.0, -1e9, 1e9})


def sentinels(columns: np.ndarray, names: str = "column", once: bool = False) -> list[Issue]:
    """A value repeated in a column and far outside the rest of it (``-9999`` for "missing"): TM109.

    "Far outside" is a gap: the value lies beyond the rest of the column, more than 10 robust sigmas from
    the median of the other values and from the nearest of them. A long tail is continuous and has no such
    gap; a sentinel does. ``once``: the loss function raised on this batch, so there is no second batch to
    show the value again; a conventional code (:data:`CONVENTIONAL_SENTINELS`) seen once is enough then.
    """
    out = []
    x = columns if columns.ndim == 2 else columns.reshape(-1, 1)
    for j in range(x.shape[1]):
        col = x[:, j]
        col = col[np.isfinite(col)]
        if len(col) < 8:
            continue
        values, counts = np.unique(col, return_counts=True)
        for v, c in zip(values, counts):
            if c < 2 and not (once and float(v) in CONVENTIONAL_SENTINELS):
                continue
            others = col[col != v]
            if len(others) < max(4, c):  # the value is the bulk of the column, not an outlier
                continue
            sigma = _robust_sigma(others)
            med = float(np.median(others))
            gap = float(np.min(np.abs(others - v)))
            beyond = v < others.min() or v > others.max()
            if beyond and sigma > 0 and abs(v - med) > 10 * sigma and gap > 10 * sigma:
                where = f"{names} {j}" if x.shape[1] > 1 else names
                out.append(Issue("TM109", f"{where} holds the value {v:g} {c} times in {len(col)} rows, "
                                 f"{abs(v - med) / sigma:.0f} robust sigmas from the rest (median {med:.4g}): a "
                                 "sentinel for \"missing\" that trains as a real value?",
                                 {"column": j, "value": float(v), "count": int(c), "rows": len(col),
                                  "median": med, "robust_sigma": sigma, "gap": gap},
                                 f"TM109:{names}:{j}:{v:g}"))
    return out


def unscaled(features: np.ndarray, what: str = "the model's input") -> Issue | None:
    """TM108: column scales that differ by more than 1e3, or columns far from zero mean."""
    finite = np.where(np.isfinite(features), features, np.nan)
    std = np.nanstd(finite, axis=0)
    mean = np.nanmean(finite, axis=0)
    live = np.isfinite(std) & (std > 0)
    if live.sum() < 1:
        return None
    s, m = std[live], mean[live]
    ratio = float(s.max() / s.min())
    offset = np.abs(m) / s
    far = int((offset > 10).sum())
    if ratio <= 1e3 and far == 0:
        return None
    parts = []
    if ratio > 1e3:
        parts.append(f"column standard deviations range from {s.min():.3g} to {s.max():.3g} ({ratio:.3g}x)")
    if far:
        j = int(np.argmax(offset))
        parts.append(f"{far} column(s) sit far from zero (column {int(np.flatnonzero(live)[j])}: mean {m[j]:.4g}, "
                     f"std {s[j]:.3g})")
    return Issue("TM108", f"{what} is not standardized: " + "; ".join(parts),
                 {"std_ratio": ratio, "columns_far_from_zero": far, "columns": int(live.sum()),
                  "std_min": float(s.min()), "std_max": float(s.max())}, "TM108")


def target_under_regression(y: np.ndarray, loss: str) -> Issue | None:
    """TM111 (counts) and TM112 (positive skewed) for a target fed raw to a regression loss."""
    y = y[np.isfinite(y)]
    if len(y) < 30 or loss not in REGRESSION_LOSSES:
        return None
    integer = bool(np.all(y == np.round(y)))
    distinct = len(np.unique(y))
    if integer and y.min() >= 0 and distinct >= 3:
        zeros = float(np.mean(y == 0))
        if zeros >= 0.5 or float(y.mean()) < 2:
            return Issue("TM111", f"the target of `{loss}` is a small count ({zeros:.0%} zeros, mean {y.mean():.3g}, "
                         f"max {y.max():g}): squared error on counts gives the rare non-zero rows tiny gradients; "
                         "use a Poisson loss on a log-rate (F.poisson_nll_loss) or a distribution over counts",
                         {"loss": loss, "zero_share": zeros, "mean": float(y.mean()), "max": float(y.max()),
                          "distinct": distinct, "rows": len(y)}, "TM111")
    if y.min() > 0:
        sd = float(y.std())
        skew = float(np.mean(((y - y.mean()) / sd) ** 3)) if sd > 0 else 0.0
        spread = float(y.max() / y.min())
        if skew > 1 or spread > 100:
            return Issue("TM112", f"the target of `{loss}` is positive and right-skewed (skew {skew:.2f}, max/min "
                         f"{spread:.3g}): the largest values dominate the squared error; train on log(y) and judge "
                         "by log-RMSE", {"loss": loss, "skew": skew, "max_over_min": spread, "rows": len(y),
                                         "min": float(y.min()), "max": float(y.max())}, "TM112")
    return None

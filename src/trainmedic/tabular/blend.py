"""Metrics per task, and blend weights chosen on out-of-fold predictions.

Weights are convex (non-negative, summing to one). The blend's fold scores are cross-fitted: the weights
used to score fold k are chosen on the out-of-fold predictions of the other folds only, so the blend's
reported score is not flattered by weights fitted on the rows it is scored on. The weights used for the
test predictions are chosen on all out-of-fold predictions.

Count targets get two sets of weights: one for the mean (minimizing Poisson deviance), one for the
predictive distribution (a mixture of the models' distributions, maximizing the likelihood).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

EPS = 1e-9


# ---- metrics ----------------------------------------------------------------------------------------
def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(y)) ** 2)))


def poisson_deviance(mean: np.ndarray, y: np.ndarray) -> float:
    mu = np.maximum(np.asarray(mean, dtype="float64"), EPS)
    y = np.asarray(y, dtype="float64")
    term = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(np.mean(2.0 * (term - (y - mu))))


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(probs)[np.arange(len(y)), np.asarray(y, dtype=int)], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(y)))


def nll(logp: np.ndarray) -> float:
    return float(-np.mean(logp))


# ---- convex weights ------------------------------------------------------------------------------------
def convex_weights(loss, m: int) -> np.ndarray:
    """Weights w >= 0 with sum 1 minimizing ``loss(w)``; uniform start, SLSQP."""
    if m == 1:
        return np.ones(1)
    best_w = np.full(m, 1.0 / m)
    best = loss(best_w)
    # also try each single model: the optimizer must never end worse than the best one alone
    for j in range(m):
        e = np.eye(m)[j]
        v = loss(e)
        if v < best:
            best, best_w = v, e
    try:
        res = optimize.minimize(
            loss,
            np.full(m, 1.0 / m),
            method="SLSQP",
            bounds=[(0.0, 1.0)] * m,
            constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0}],
            options={"maxiter": 200, "ftol": 1e-12},
        )
        if res.success or np.isfinite(res.fun):
            w = np.clip(res.x, 0.0, None)
            w = w / w.sum() if w.sum() > 0 else best_w
            if loss(w) <= best:
                best_w = w
    except (ValueError, FloatingPointError):
        pass
    return best_w


def _mix_logp(logps: np.ndarray, w: np.ndarray) -> np.ndarray:
    """log sum_m w_m p_m(y) for an (m, n) array of model log-probabilities."""
    with np.errstate(divide="ignore"):
        lw = np.log(np.maximum(w, 0.0))
    return logsumexp(logps + lw[:, None], axis=0)


def fit_weights(task: str, preds: list[Any], y: np.ndarray) -> dict[str, np.ndarray]:
    """Blend weights for a task from per-model OOF predictions on the rows ``y``.

    ``preds``: regression → list of (n,) arrays; count → list of (mean (n,), logp (n,)) pairs;
    classification → list of (n, C) probability matrices.
    """
    m = len(preds)
    if task in ("regression", "log-regression"):
        P = np.column_stack(preds)
        return {"point": convex_weights(lambda w: float(np.mean((P @ w - y) ** 2)), m)}
    if task == "count":
        M = np.column_stack([p[0] for p in preds])
        L = np.stack([p[1] for p in preds])
        return {
            "mean": convex_weights(lambda w: poisson_deviance(M @ w, y), m),
            "distribution": convex_weights(lambda w: -float(np.mean(_mix_logp(L, w))), m),
        }
    S = np.stack(preds)
    return {"proba": convex_weights(lambda w: log_loss(np.tensordot(w, S, axes=1), y), m)}


def apply_weights(task: str, preds: list[Any], w: dict[str, np.ndarray]) -> Any:
    if task in ("regression", "log-regression"):
        return np.column_stack(preds) @ w["point"]
    if task == "count":
        mean = np.column_stack([p[0] for p in preds]) @ w["mean"]
        logp = _mix_logp(np.stack([p[1] for p in preds]), w["distribution"]) if preds[0][1] is not None else None
        return mean, logp
    return np.tensordot(w["proba"], np.stack(preds), axes=1)


def score(task: str, pred: Any, y: np.ndarray, target_scale: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of a task; the first key is the primary metric."""
    if task == "log-regression":
        return {"log_rmse": rmse(pred, y)}
    if task == "regression":
        return {"rmse": rmse(pred, y)}
    if task == "count":
        mean, logp = pred
        out = {"poisson_deviance": poisson_deviance(mean, y)}
        if logp is not None:
            out["nll"] = nll(logp)
        return out
    return {"log_loss": log_loss(pred, y), "accuracy": accuracy(pred, y)}


def take(task: str, pred: Any, idx: np.ndarray) -> Any:
    if task == "count":
        mean, logp = pred
        return mean[idx], (logp[idx] if logp is not None else None)
    return pred[idx]


def weights_json(names: list[str], w: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {k: {n: round(float(x), 6) for n, x in zip(names, v, strict=True)} for k, v in w.items()}


__all__ = [
    "accuracy",
    "apply_weights",
    "convex_weights",
    "fit_weights",
    "log_loss",
    "nll",
    "poisson_deviance",
    "rmse",
    "score",
    "take",
    "weights_json",
]


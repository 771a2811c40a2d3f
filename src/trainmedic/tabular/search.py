"""``fit --search N``: an Optuna study per model, nested inside the folds.

In each outer fold, a model's study sees that fold's *training* rows only. It splits them once more, into
3 parts: each trial trains the model with the trial's settings on two parts and is scored on the third,
three times, and the mean is the trial's inner score. (A single 15 % inner split was tried first: on the
house prices its ~175 rows were too few to tell settings apart, and the choices lost to the defaults on the
outer folds.) The outer validation fold, on which the chosen model is judged, is never given to the study:
the search cannot choose on the rows it is judged on, so the outer score stays an honest estimate of what
searching buys.

The first trial of every study is the default setting (enqueued), so the study's best is never worse than
the default on the inner score. Trials run under a seeded TPE sampler (reproducible with ``--seed``), stop
at ``N`` or at the study's share of ``--time-budget`` (Optuna's ``timeout``), and Optuna's own logging is
silenced for the study: the fit's progress shows one line for it.

What each fold's study chose, the inner scores of the default and of the choice, and the outer scores of
the model with and without the search are reported in ``cv.json`` (``models.<name>.search``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainmedic.tabular.models import GBMConfig, MLPConfig
from trainmedic.tabular.preprocess import FeatureFrame

# the network's layer widths, as Optuna's categorical choices (strings: JSON- and enqueue-friendly)
HIDDEN = {"64": (64,), "128-64": (128, 64), "256-128": (256, 128), "256-128-64": (256, 128, 64)}
SEARCHED = ("mlp", "lightgbm", "linear")


def default_params(name: str, task: str, mlp: MLPConfig, gbm: GBMConfig) -> dict[str, Any]:
    """The default setting as a point of the search space (the study's first, enqueued trial)."""
    if name == "mlp":
        hidden = "-".join(str(h) for h in mlp.hidden)
        return {"hidden": hidden if hidden in HIDDEN else "128-64", "dropout": mlp.dropout, "lr": mlp.lr,
                "weight_decay": mlp.weight_decay}
    if name == "lightgbm":
        return {"num_leaves": gbm.num_leaves, "min_child_samples": gbm.min_child_samples,
                "colsample_bytree": gbm.colsample_bytree, "subsample": gbm.subsample,
                "reg_lambda": max(gbm.reg_lambda, 1e-3)}
    if task in ("regression", "log-regression"):
        return {"l1_ratio": 1.0}
    return {"reg": 1e-3 if task == "count" else 1.0}


def suggest(name: str, task: str, trial: Any) -> dict[str, Any]:
    """One point of a model's search space. Ranges are wide and generic (no data set's tuning)."""
    if name == "mlp":
        return {
            "hidden": trial.suggest_categorical("hidden", list(HIDDEN)),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "lr": trial.suggest_float("lr", 2e-4, 5e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        }
    if name == "lightgbm":
        return {
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 3, 80, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.1, 1.0),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        }
    if task in ("regression", "log-regression"):
        # the strength is chosen by the model's own CV path; the search picks lasso vs. ridge-like mixing
        return {"l1_ratio": trial.suggest_float("l1_ratio", 0.05, 1.0)}
    return {"reg": trial.suggest_float("reg", 1e-5, 10.0, log=True)}


def configure(name: str, params: dict[str, Any], mlp: MLPConfig, gbm: GBMConfig) -> Any:
    """The model's configuration with ``params`` applied: an MLPConfig, a GBMConfig, or the linear model's
    keyword arguments."""
    if name == "mlp":
        p = dict(params)
        if "hidden" in p:
            p["hidden"] = HIDDEN[p["hidden"]]
        return replace(mlp, **p)
    if name == "lightgbm":
        return replace(gbm, **params)
    return dict(params)


def trial_config(name: str, cfg: Any) -> Any:
    """Cheaper settings for a trial than for the kept model: one network instead of a bag, and one
    LightGBM training with early stopping on the trial's own split instead of an inner K-fold CV."""
    if name == "mlp":
        return replace(cfg, bags=1)
    if name == "lightgbm":
        return replace(cfg, single_split_rows=0, large_early_stopping=cfg.early_stopping)
    return cfg


@dataclass
class StudyResult:
    """One (fold, model) study: what it chose and how the choice scored on the inner split."""

    params: dict[str, Any]
    default: dict[str, Any]
    inner_score: float  # the chosen setting on the inner-validation rows
    default_inner_score: float  # the default setting there (the first trial)
    trials: int
    failed: int
    time_s: float
    timed_out: bool = False
    outer_score: float | None = None  # filled by fit: the chosen model on the outer validation fold
    default_outer_score: float | None = None  # ... and the default model there
    history: list[float] = field(default_factory=list)

    @property
    def chose_default(self) -> bool:
        return self.params == self.default

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": _plain(self.params),
            "chose_default": self.chose_default,
            "inner_score": _round(self.inner_score),
            "default_inner_score": _round(self.default_inner_score),
            "outer_score": _round(self.outer_score),
            "default_outer_score": _round(self.default_outer_score),
            "trials": self.trials,
            "failed_trials": self.failed,
            "timed_out": self.timed_out,
            "time_s": round(self.time_s, 2),
        }


def _round(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in params.items()}


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna at WARNING for the study (its INFO line per trial would flood the user's terminal)."""
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(old)


def run_study(
    name: str,
    task: str,
    X: FeatureFrame,
    y: np.ndarray,
    inner: tuple[np.ndarray, np.ndarray],
    *,
    make: Callable[[Any], Any],
    split: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    score: Callable[[Any, np.ndarray], float],
    default: dict[str, Any],
    base: tuple[MLPConfig, GBMConfig],
    trials: int,
    seed: int,
    timeout: float | None = None,
    on_trial: Callable[[int, int], None] | None = None,
    folds: int = 3,
) -> StudyResult:
    """Search one model's settings on the fold's training rows ``X``/``y`` only.

    A trial is scored by ``score(prediction, y)`` (lower is better), averaged over a ``folds``-fold split of
    those rows: fitted by ``make(config)`` on each part's training rows (whose own early-stopping split is
    ``split(y_part)``) and scored on its held-out rows. With ``folds`` <= 1, on the single ``inner``
    (train, validation) split instead: cheaper, but on a small table its ~15 % of the rows are too few to
    tell settings apart (house prices: the choices lost to the defaults on the outer folds). ``base`` holds the fit's network and LightGBM settings,
    which the trial's parameters override.
    """
    from sklearn.model_selection import KFold

    from trainmedic.tabular.models import subset_frame

    if folds > 1:  # a K-fold split of the fold's training rows: every row judges a trial once
        splits = [(np.sort(a), np.sort(b)) for a, b in
                  KFold(folds, shuffle=True, random_state=seed % (2**31)).split(np.zeros(len(y)))]
    else:
        splits = [inner]
    parts = [(subset_frame(X, a), y[a], split(y[a]), subset_frame(X, b), y[b]) for a, b in splits]
    mlp, gbm = base
    t0 = time.perf_counter()
    stop = None if timeout is None else t0 + timeout

    def objective(trial: Any) -> float:
        params = suggest(name, task, trial)
        scores = []
        for Xa, ya, split_a, Xb, yb in parts:
            model = make(trial_config(name, configure(name, params, mlp, gbm)))
            if stop is not None and hasattr(model, "deadline"):
                model.deadline = stop  # a trial in flight at the timeout ends there (Optuna stops between trials)
            model.fit(Xa, ya, split_a)
            scores.append(float(score(model.predict(Xb), yb)))
        v = float(np.mean(scores))
        return v if math.isfinite(v) else math.inf

    with quiet_optuna() as optuna:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        study.enqueue_trial(default)

        def progress(study: Any, trial: Any) -> None:
            if on_trial is not None:
                on_trial(len(study.trials), trials)

        with np.errstate(all="ignore"):
            study.optimize(objective, n_trials=trials, timeout=timeout, catch=(ValueError, ArithmeticError,
                                                                                RuntimeError),
                           callbacks=[progress])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    history = [float(t.value) for t in done]
    first = study.trials[0] if study.trials else None
    default_score = float(first.value) if first is not None and first.value is not None else math.inf
    if done:
        best = min(done, key=lambda t: t.value)
        params, best_score = dict(best.params), float(best.value)
    else:
        params, best_score = dict(default), math.inf
    if not best_score < default_score:  # ties keep the default
        params, best_score = dict(default), default_score
    return StudyResult(
        params=params, default=dict(default), inner_score=best_score, default_inner_score=default_score,
        trials=len(study.trials), failed=len(study.trials) - len(done), time_s=time.perf_counter() - t0,
        timed_out=len(study.trials) < trials, history=history,
    )


def summary(results: list[StudyResult]) -> dict[str, Any]:
    """cv.json's ``search`` entry of a model: per fold, and the outer means with and without the search."""
    outer = [r.outer_score for r in results if r.outer_score is not None]
    default = [r.default_outer_score for r in results if r.default_outer_score is not None]
    return {
        "per_fold": [r.to_dict() for r in results],
        "outer_mean": _round(float(np.mean(outer))) if outer else None,
        "default_outer_mean": _round(float(np.mean(default))) if default else None,
        "folds_changed": sum(not r.chose_default for r in results),
        "note": "each fold's study chose on an inner split of that fold's training rows only; outer scores are "
                "on the fold's validation rows, with the chosen and with the default setting",
    }


__all__ = ["SEARCHED", "StudyResult", "configure", "default_params", "run_study", "suggest", "summary"]

"""A supervised, cross-fitted score of a ``--text`` column: what a linear model on its sparse TF-IDF predicts.

Why: the truncated SVD beside it (:class:`~trainmedic.tabular.preprocess.TextSVD`) keeps the directions of
largest variance of the TF-IDF, which are the frequent, neutral words; a word that is rare but decides the
target ("mould", "penthouse") is lost in 16 components. A ridge / logistic model on the full sparse TF-IDF
weighs every word by what it says about the target, and its prediction is one column (one per class for
several classes) that any member (network, LightGBM, linear model) can use. This is stacking a linear text
model under the tabular models, a standard technique.

Leak-free, as :class:`~trainmedic.tabular.target_encoding.TargetMeans` is: on the training rows each row's score
comes from a model fitted on the other inner folds of those rows (a row never sees its own target); validation
and new rows get the prediction of the model fitted on all the training rows. The strength of the penalty is
chosen among a few values by the same inner cross-fit (its out-of-fold error), never on the fold's validation
rows.

What is predicted, on the scale the members train on (:mod:`trainmedic.tabular.target`):

- regression / log-regression: ridge on the target as given (log(y) for log-regression);
- count: ridge on log1p(count), the log scale the count models' means live on;
- binary: the logistic model's logit (one column);
- multiclass: the multinomial model's log-probabilities (one column per class present in training).

The fitted model is ``coef`` (outputs x vocabulary) and ``intercept``; :func:`text_scores` turns a TF-IDF
matrix into the score columns and is what both this class and the saved form (:mod:`trainmedic.tabular.frozen`)
apply, so ``predict`` reproduces ``fit``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import log_softmax

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
LOGISTIC_CS = (0.1, 1.0, 10.0, 100.0)
FLOOR = np.log(1e-6)  # log-probability of a class that an inner fold's training part did not hold


def text_scores(T: Any, coef: np.ndarray, intercept: np.ndarray, kind: str) -> np.ndarray:
    """The score columns of a TF-IDF matrix ``T`` (sparse, rows x vocabulary) for a fitted linear model."""
    Z = np.asarray(T @ np.asarray(coef, dtype="float64").T, dtype="float64") + np.asarray(intercept, "float64")
    return log_softmax(Z, axis=1) if kind == "multiclass" else Z


class TextScore:
    """Ridge (numbers) or logistic (classes) on a sparse TF-IDF, cross-fitted on the training rows."""

    def __init__(self, task: str, folds: int = 5, seed: int = 0) -> None:
        self.task = task
        self.folds = folds
        self.seed = seed
        self.kind: str | None = None  # "ridge", "binary" or "multiclass"; None when nothing can be learnt
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)
        self.reg = 0.0

    @property
    def classifies(self) -> bool:
        return self.task in ("binary", "multiclass")

    def _target(self, y: Any) -> np.ndarray:
        y = np.asarray(y)
        if self.classifies:
            return y.astype("int64")
        y = y.astype("float64")
        return np.log1p(np.maximum(y, 0.0)) if self.task == "count" else y

    def _make(self, reg: float) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        if self.classifies:
            return LogisticRegression(C=reg, max_iter=1000)
        return Ridge(alpha=reg)

    def _splits(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import KFold, StratifiedKFold

        if self.classifies:
            counts = np.bincount(y)
            if counts[counts > 0].min() >= self.folds:
                return list(StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(y, y))
        return list(KFold(self.folds, shuffle=True, random_state=self.seed).split(y))

    def _heldout(self, est: Any, T: Any) -> np.ndarray:
        """An inner model's scores, on the columns of the classes of all the training rows."""
        if not self.classifies:
            return est.predict(T)[:, None]
        lp = np.full((T.shape[0], len(self.classes_)), FLOOR)
        lp[:, np.searchsorted(self.classes_, est.classes_)] = est.predict_log_proba(T)
        lp = log_softmax(lp, axis=1)
        return lp[:, 1:2] - lp[:, 0:1] if self.kind == "binary" else lp

    def _loss(self, S: np.ndarray, y: np.ndarray) -> float:
        if not self.classifies:
            return float(np.mean((S[:, 0] - y) ** 2))
        lp = (log_softmax(np.column_stack([np.zeros(len(S)), S[:, 0]]), axis=1) if self.kind == "binary"
              else S)
        return float(-np.mean(lp[np.arange(len(y)), np.searchsorted(self.classes_, y)]))

    def fit_transform(self, T: Any, y: Any) -> np.ndarray | None:
        """The training rows' out-of-fold scores (None when the target leaves nothing to learn: one class, a
        constant, or too few rows to cross-fit); the all-rows model kept for :meth:`transform`."""
        y = self._target(y)
        if len(y) < 2 * self.folds or np.unique(y).size < 2:
            return None
        if self.classifies:
            self.classes_ = np.unique(y)
            self.kind = "binary" if len(self.classes_) == 2 else "multiclass"
        else:
            self.kind = "ridge"
        splits = self._splits(y)
        best, best_loss = None, np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter at the weakest penalty
            for reg in LOGISTIC_CS if self.classifies else RIDGE_ALPHAS:
                S = np.zeros((len(y), 1 if self.kind != "multiclass" else len(self.classes_)))
                for a, b in splits:
                    if self.classifies and np.unique(y[a]).size < 2:
                        S[b] = 0.0 if self.kind == "binary" else -np.log(len(self.classes_))
                        continue
                    S[b] = self._heldout(self._make(reg).fit(T[a], y[a]), T[b])
                loss = self._loss(S, y)
                if loss < best_loss:
                    best, best_loss, self.reg = S, loss, reg
            est = self._make(self.reg).fit(T, y)
        self.coef = np.atleast_2d(np.asarray(est.coef_, dtype="float64"))
        self.intercept = np.atleast_1d(np.asarray(est.intercept_, dtype="float64"))
        return best

    def transform(self, T: Any) -> np.ndarray:
        return text_scores(T, self.coef, self.intercept, str(self.kind))


__all__ = ["TextScore", "text_scores"]

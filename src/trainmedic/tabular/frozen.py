"""Fitted preprocessing as plain numbers (JSON), and its transform in numpy: how ``fit --save`` stores it.

A pickled scikit-learn ``ColumnTransformer`` would run code when loaded, and breaks across versions. What
the preprocessing of :mod:`trainmedic.tabular.preprocess` learns is a handful of numbers and category
lists: medians and missing-value indicators, the log1p columns, winsorizing bounds, mean and scale, the
categories of the one-hot and ordinal encoders (with the pooled "infrequent" ones). :func:`freeze` reads
them from the fitted transformer's public attributes; :class:`FrozenTransform` applies them with the same
operations in the same order, so the saved model reproduces the fitted one's predictions (the tests compare
the two on training, validation and unseen rows).

A ``--text`` column's encoder (:class:`~trainmedic.tabular.preprocess.TextSVD`) is frozen as its TF-IDF
settings, vocabulary (term -> index), idf weights and SVD components (then the scaler's mean and scale on
the dense models). The vocabulary and arrays can be large, so they stay numpy/dict values in the spec and
:mod:`trainmedic.tabular.saved` moves them into files of their own (JSON and ``.npy``). The transform is
rebuilt with scikit-learn's own ``TfidfVectorizer`` given that vocabulary and idf (its tokenizer, n-grams,
sublinear tf and norm are then exactly the fitted ones'), times the components (what ``TruncatedSVD``
computes), and beside them the supervised score (:mod:`trainmedic.tabular.text_score`): its kind and intercept
in the spec, its coefficients (outputs x vocabulary) an array moved to a ``.npy`` file like the components.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _floats(a: Any) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype="float64").ravel()]


def _encoder_spec(kind: str, enc: Any, cols: list[str]) -> dict[str, Any]:
    infrequent = getattr(enc, "infrequent_categories_", None) or [None] * len(cols)
    return {
        "kind": kind,
        "cols": list(cols),
        "categories": [[str(c) for c in cats] for cats in enc.categories_],
        "infrequent": [None if inf is None else [str(c) for c in inf] for inf in infrequent],
    }


# the TfidfVectorizer settings that only matter while fitting (which terms are kept); the rest is stored
_FIT_ONLY = ("max_df", "min_df", "max_features", "vocabulary", "dtype")


def _text_spec(trans: Any, col: str) -> dict[str, Any]:
    """A fitted ``TextSVD`` (alone, or as the first step of a pipeline with a ``StandardScaler``)."""
    from sklearn.pipeline import Pipeline

    svd_step = trans.named_steps["svd"] if isinstance(trans, Pipeline) else trans
    part: dict[str, Any] = {"kind": "text", "col": col, "settings": None, "vocabulary": None, "idf": None,
                            "components": None}
    if svd_step.tfidf_ is not None and svd_step.svd_ is not None:
        vec = svd_step.tfidf_
        settings = {k: v for k, v in vec.get_params().items() if k not in _FIT_ONLY}
        for k, v in settings.items():  # anything not plain (a callable tokenizer) could not be rebuilt
            if not (v is None or isinstance(v, (str, bool, int, float, tuple, list))):
                raise ValueError(f"TF-IDF setting {k}={v!r} cannot be stored")
        settings["ngram_range"] = list(settings["ngram_range"])  # JSON has no tuples
        part.update(settings=settings,
                    vocabulary={str(t): int(i) for t, i in vec.vocabulary_.items()},
                    idf=np.asarray(vec.idf_, dtype="float64"),
                    components=np.asarray(svd_step.svd_.components_, dtype="float64"))
        score = getattr(svd_step, "score_", None)
        if score is not None:  # the supervised score: its kind and intercept here, its coefficients in a file
            part.update(score={"kind": score.kind, "intercept": _floats(score.intercept)},
                        score_coef=np.asarray(score.coef, dtype="float64"))
    if isinstance(trans, Pipeline):
        scale = trans.named_steps["scale"]
        part.update(mean=_floats(scale.mean_), scale=_floats(scale.scale_))
    return part


def freeze(ct: Any) -> dict[str, Any]:
    """The fitted ``ColumnTransformer`` of ``dense_preprocessor`` / ``tree_preprocessor`` as a JSON-able spec."""
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

    parts: list[dict[str, Any]] = []
    for name, trans, cols in ct.transformers_:
        if (isinstance(trans, str) and trans == "drop") or name == "remainder" or len(cols) == 0:
            continue
        if name.startswith("text"):  # a free-text column, named by a scalar (the encoder gets one sequence)
            parts.append(_text_spec(trans, str(cols)))
            continue
        cols = list(cols)
        if isinstance(trans, str) and trans == "passthrough" or isinstance(trans, FunctionTransformer):
            parts.append({"kind": "passthrough", "cols": cols})
        elif isinstance(trans, OneHotEncoder):
            parts.append(_encoder_spec("onehot", trans, cols))
        elif isinstance(trans, OrdinalEncoder):
            parts.append(_encoder_spec("ordinal", trans, cols))
        else:  # the numeric pipeline: impute -> log1p -> winsorize -> scale
            imp, log1p, win, scale = (trans.named_steps[k] for k in ("impute", "log1p", "winsorize", "scale"))
            indicator = getattr(imp, "indicator_", None)
            parts.append({
                "kind": "numeric",
                "cols": cols,
                "median": _floats(imp.statistics_),
                "indicator": [int(i) for i in indicator.features_] if indicator is not None else [],
                "log1p": [bool(b) for b in log1p.columns_],
                "lo": _floats(win.lo_),
                "hi": _floats(win.hi_),
                "mean": _floats(scale.mean_),
                "scale": _floats(scale.scale_),
            })
    return {"parts": parts}


class FrozenTransform:
    """``transform(frame)`` of a frozen spec: the same matrix the fitted ColumnTransformer gives."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self._vectorizers: dict[int, Any] = {}

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        blocks = [self._part(part, X) for part in self.spec["parts"]]
        if not blocks:
            return np.zeros((len(X), 0))
        return np.hstack(blocks)

    # ---- the parts ----------------------------------------------------------------------------------
    def _part(self, part: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
        kind = part["kind"]
        if kind == "passthrough":
            return X[part["cols"]].to_numpy(dtype="float64")
        if kind == "numeric":
            return self._numeric(part, X[part["cols"]].to_numpy(dtype="float64"))
        if kind == "text":
            return self._text(part, X[part["col"]])
        values = X[part["cols"]].to_numpy(dtype=object)
        return self._onehot(part, values) if kind == "onehot" else self._ordinal(part, values)

    @staticmethod
    def _numeric(part: dict[str, Any], A: np.ndarray) -> np.ndarray:
        missing = np.isnan(A)
        imputed = np.where(missing, np.asarray(part["median"])[None, :], A)
        if part["indicator"]:
            imputed = np.hstack([imputed, missing[:, part["indicator"]].astype("float64")])
        cols = np.asarray(part["log1p"], dtype=bool)
        imputed[:, cols] = np.log1p(np.maximum(imputed[:, cols], 0))
        clipped = np.clip(imputed, np.asarray(part["lo"]), np.asarray(part["hi"]))
        clipped -= np.asarray(part["mean"])
        clipped /= np.asarray(part["scale"])
        return clipped

    def _text(self, part: dict[str, Any], column: pd.Series) -> np.ndarray:
        """TF-IDF with the stored vocabulary and idf, projected on the SVD components (then scaled)."""
        from trainmedic.tabular.preprocess import text_documents

        docs = text_documents(column)
        if part["components"] is None:  # the column had no words in training: one column of zeros
            A = np.zeros((len(docs), 1))
        else:
            T = self._vectorizer(part).transform(docs)
            A = T @ np.asarray(part["components"], dtype="float64").T
            if part.get("score") is not None:
                from trainmedic.tabular.text_score import text_scores

                A = np.hstack([A, text_scores(T, part["score_coef"], np.asarray(part["score"]["intercept"]),
                                              part["score"]["kind"])])
        if "mean" in part:
            A = (A - np.asarray(part["mean"])) / np.asarray(part["scale"])
        return np.asarray(A, dtype="float64")

    def _vectorizer(self, part: dict[str, Any]) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = self._vectorizers.get(id(part))
        if vec is None:
            settings = dict(part["settings"], ngram_range=tuple(part["settings"]["ngram_range"]))
            vec = TfidfVectorizer(**settings, vocabulary=part["vocabulary"], dtype=np.float64)
            vec.idf_ = np.asarray(part["idf"], dtype="float64")
            self._vectorizers[id(part)] = vec
        return vec

    @staticmethod
    def _groups(part: dict[str, Any], j: int) -> tuple[list[str], set[str]]:
        inf = set(part["infrequent"][j] or [])
        return [c for c in part["categories"][j] if c not in inf], inf

    def _onehot(self, part: dict[str, Any], values: np.ndarray) -> np.ndarray:
        out = []
        for j in range(values.shape[1]):
            frequent, inf = self._groups(part, j)
            index = {c: i for i, c in enumerate(frequent)}
            width = len(frequent) + (1 if inf else 0)
            block = np.zeros((len(values), width), dtype=np.float32)
            for r, v in enumerate(values[:, j]):
                i = index.get(str(v))
                if i is not None:
                    block[r, i] = 1.0
                elif inf:  # an infrequent or unseen category: the pooled column
                    block[r, width - 1] = 1.0
            out.append(block)
        return np.hstack(out) if out else np.zeros((len(values), 0), dtype=np.float32)

    def _ordinal(self, part: dict[str, Any], values: np.ndarray) -> np.ndarray:
        out = np.full(values.shape, np.nan)
        for j in range(values.shape[1]):
            frequent, inf = self._groups(part, j)
            index = {c: float(i) for i, c in enumerate(frequent)}
            for r, v in enumerate(values[:, j]):
                s = str(v)
                if s in index:
                    out[r, j] = index[s]
                elif s in inf:
                    out[r, j] = float(len(frequent))
        return out


__all__ = ["FrozenTransform", "freeze"]

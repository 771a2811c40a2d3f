"""Feature preparation: what is done once (row-wise, no statistics) and what is fitted inside each fold.

Row-wise, before any split (nothing is learnt from other rows, so nothing leaks): drop the target and
the identifier columns, turn "numbers stored as text" into numbers, booleans and dates into numbers, and
text categories into plain strings with missing values as their own category.

Fitted on the training rows of each fold only (scikit-learn ``ColumnTransformer``):

- for the network and the linear model: median imputation with missing-value indicators, ``log1p`` of
  right-skewed non-negative columns, winsorizing at the training 1 % / 99 % quantiles (so a validation or
  test row far outside the training range is not extrapolated linearly), standardization, and one-hot
  encoding that ignores categories unseen in training and pools rare ones;
- for gradient boosting: raw numbers and one-hot categories (trees need no scaling).

pandas >= 3 gives text columns the ``str`` dtype, so numeric columns are selected with
``pd.api.types.is_numeric_dtype``, never with ``dtypes != 'object'`` (the bug of note 001's pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

MISSING = "__missing__"
NUMERIC_TEXT_SHARE = 0.95


@dataclass
class FeatureFrame:
    X: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why
    converted: list[str] = field(default_factory=list)  # numbers-as-text turned into numbers
    dates: dict[str, list[str]] = field(default_factory=dict)  # date column -> its numeric parts
    text: list[str] = field(default_factory=list)  # free-text columns kept on request (fit --text)


def parse_numeric_text(s: pd.Series) -> pd.Series:
    """Text → numbers, tolerating spaces, thousands separators and a currency or percent sign."""
    t = s.astype("string").str.strip().str.replace(r"[,\s\u00a0$€£%]", "", regex=True)
    return pd.to_numeric(t, errors="coerce")


def numeric_text_share(s: pd.Series) -> tuple[float, pd.Series]:
    present = s.dropna()
    present = present[present.astype(str).str.strip() != ""]
    if len(present) == 0:
        return 0.0, present
    parsed = parse_numeric_text(present)
    return float(parsed.notna().mean()), present[parsed.isna()]


def is_id_like(s: pd.Series, n: int) -> bool:
    """Unique on every row, and integer or text (continuous measurements are unique too, and fine).

    The cheap tests come first: counting the distinct values of every column of a 200k-row file, three
    times over (the roles, the id column, the checks), took seconds of a fit's time budget."""
    if n < 10 or s.isna().any():
        return False
    if pd.api.types.is_float_dtype(s):
        if not np.all(np.asarray(s) == np.round(np.asarray(s))):
            return False
    elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_integer_dtype(s):
        return False
    return bool(s.nunique() == n)


_DATE_SHAPE = r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*$"
ID_NAMES = ("id", "ids", "key", "index")
DATE_PARTS = ("year", "month", "dayofweek", "days")
FREE_TEXT = ("free text, left out (a one-hot of sentences unique to a row carries nothing a model can use; "
             "`fit --text COLUMN` keeps it as TF-IDF components)")


def _named_like_id(name: str) -> bool:
    low = name.lower()
    return low in ID_NAMES or low.endswith(("_id", "id", "_key", "_no", "_number"))


def parse_dates(s: pd.Series) -> pd.Series:
    """Dates written as text (ISO ``2021-03-04``, ``04/03/2021``, with or without a time) → datetimes."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    return pd.to_datetime(s.astype("string").str.strip(), errors="coerce", format="mixed")


def looks_like_dates(s: pd.Series) -> bool:
    """A text column whose values (a sample of 500 and then all) are at least 95 % dates."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return True
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return False
    present = s.dropna().astype(str)
    if len(present) == 0:
        return False
    sample = present.iloc[:500]
    if sample.str.match(_DATE_SHAPE).mean() < 0.95:
        return False
    return bool(parse_dates(present).notna().mean() >= 0.95)


def looks_like_free_text(s: pd.Series) -> bool:
    """Sentences: mostly distinct values, 20+ characters on average, most with spaces."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
        return False
    present = s.dropna().astype(str)
    if len(present) < 10:
        return False
    return bool(present.nunique() >= 0.5 * len(present) and present.str.len().mean() >= 20
                and present.str.contains(r"\s", regex=True).mean() >= 0.5)


def column_role(s: pd.Series, name: str, n: int) -> str | None:
    """How a person would read a column: "identifier", "date", "free text", or None (a feature as it is).

    ``check-data`` (TM106) and ``fit`` both ask this, so they agree. A unique whole number is an identifier
    only when it is named like one or counts the rows (1, 2, 3, ... or consecutive from any start); unique
    whole-number measurements (an income, an area in square feet) are features.
    """
    if looks_like_dates(s):
        return "date"
    if looks_like_free_text(s):
        return "free text"
    if not is_id_like(s, n):
        return None
    if not pd.api.types.is_numeric_dtype(s):
        return "identifier"
    if _named_like_id(name):
        return "identifier"
    v = np.sort(np.asarray(s, dtype="float64"))
    return "identifier" if bool(np.all(np.diff(v) == 1)) else None


def find_id_column(df: pd.DataFrame, target: str | None) -> str | None:
    """The column to use as the submission id: the first id-like column, preferring one named like an id."""
    cands = [c for c in df.columns if c != target and is_id_like(df[c], len(df))
             and column_role(df[c], c, len(df)) == "identifier"]
    named = [c for c in cands if _named_like_id(c)]
    return (named or cands or [None])[0]


def prepare_features(df: pd.DataFrame, drop: list[str], reference: FeatureFrame | None = None,
                     text: tuple[str, ...] | list[str] = ()) -> FeatureFrame:
    """Row-wise preparation. With ``reference`` (the training frame), test columns are typed the same way.
    ``text``: columns kept as free text (plain strings, "" when missing), encoded inside the folds."""
    X = df.drop(columns=[c for c in drop if c in df.columns])
    text = list(reference.text) if reference is not None else [c for c in text if c in X.columns]
    texts = {c: _as_text(X[c]) for c in text}
    X = X.drop(columns=text)
    dropped: dict[str, str] = {}
    converted: list[str] = []
    dates: dict[str, list[str]] = {}
    out: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    if reference is not None:
        derived = {d: src for src, parts in reference.dates.items() for d in parts}
        for src, parts in reference.dates.items():
            out.update({k: v for k, v in date_parts(X[src], src).items() if k in parts})
        for c in reference.numeric:
            if c in derived:
                continue
            s = X[c]
            if pd.api.types.is_numeric_dtype(s):
                out[c] = s.astype("float64")
            else:
                out[c] = parse_numeric_text(s).astype("float64")
        for c in reference.categorical:
            out[c] = _as_category(X[c])
        out.update(texts)
        frame = pd.DataFrame(out, index=X.index)
        return FeatureFrame(frame, list(reference.numeric), list(reference.categorical),
                            dates={k: list(v) for k, v in reference.dates.items()}, text=list(text))
    for c in X.columns:
        s = X[c]
        if s.isna().all():
            dropped[c] = "entirely missing"
            continue
        if pd.api.types.is_bool_dtype(s):
            out[c] = s.astype("float64")
            numeric.append(c)
        elif pd.api.types.is_numeric_dtype(s):
            out[c] = s.astype("float64")
            numeric.append(c)
        elif looks_like_dates(s):
            parts = date_parts(s, c)
            out.update(parts)
            numeric.extend(parts)
            dates[c] = list(parts)
        else:
            share, _ = numeric_text_share(s)
            if share >= NUMERIC_TEXT_SHARE:
                out[c] = parse_numeric_text(s).astype("float64")
                numeric.append(c)
                converted.append(c)
            else:
                out[c] = _as_category(s)
                categorical.append(c)
    for c in list(numeric) + list(categorical):
        if out[c].nunique(dropna=False) <= 1:
            dropped[c] = "constant"
            out.pop(c)
            (numeric if c in numeric else categorical).remove(c)
    for src in list(dates):
        dates[src] = [d for d in dates[src] if d in out]
        if not dates[src]:
            dates.pop(src)
    out.update(texts)
    frame = pd.DataFrame(out, index=X.index)
    return FeatureFrame(frame, numeric, categorical, dropped, converted, dates, list(text))


def _as_text(s: pd.Series) -> pd.Series:
    strs = [("" if m else str(v)) for v, m in zip(s.astype(object).to_numpy(), s.isna().to_numpy(), strict=True)]
    return pd.Series(strs, index=s.index, dtype=object)


def text_documents(X: Any) -> list[str]:
    """One text column as the list of strings the TF-IDF reads (missing: ""); the saved encoder reads the same."""
    arr = np.asarray(X, dtype=object).reshape(-1)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in arr]


class TextSVD(BaseEstimator, TransformerMixin):
    """A free-text column as a few numbers: TF-IDF of its words (and word pairs), reduced by a truncated SVD
    to ``components`` columns (latent semantic analysis), and, when it is given the target and the ``task``,
    a supervised score beside them (:class:`~trainmedic.tabular.text_score.TextScore`: a ridge / logistic model
    on the full TF-IDF, cross-fitted on the training rows). Fitted on the training rows of a fold only.

    The SVD alone keeps the frequent, neutral words and misses rare words that carry the signal (issue 14:
    no gain on the listing table); the score weighs every word by what it says about the target. Without a
    target (``fit_transform(X)``) it is the SVD alone, as before.

    Robust to what real text columns hold: missing values are empty strings, a column with fewer distinct
    words than components gets fewer components, and one with no words at all becomes a column of zeros.
    """

    def __init__(self, components: int = 16, max_features: int = 20_000, task: str | None = None):
        self.components = components
        self.max_features = max_features
        self.task = task

    def fit(self, X: Any, y: Any = None) -> TextSVD:
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        """The training rows' columns: the SVD components, then the score's out-of-fold values (a row's
        score never comes from a model that saw its target)."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        from trainmedic.tabular.text_score import TextScore

        docs = text_documents(X)
        self.tfidf_, self.svd_, self.score_ = None, None, None
        for min_df in (2, 1):
            vec = TfidfVectorizer(min_df=min_df, max_features=self.max_features, ngram_range=(1, 2),
                                  sublinear_tf=True, dtype=np.float64)
            try:
                T = vec.fit_transform(docs)
            except ValueError:  # no words at all (or none left at this min_df)
                continue
            self.tfidf_ = vec
            k = min(self.components, T.shape[1] - 1, T.shape[0] - 1)
            if k >= 1:
                self.svd_ = TruncatedSVD(k, random_state=0).fit(T)
                if self.task is not None and y is not None:
                    score = TextScore(self.task)
                    held = score.fit_transform(T, y)
                    if held is not None:
                        self.score_ = score
                        return np.hstack([self.svd_.transform(T), held])
                return self.svd_.transform(T)
            break
        return np.zeros((len(docs), 1))

    def transform(self, X: Any) -> np.ndarray:
        docs = text_documents(X)
        if self.tfidf_ is None or self.svd_ is None:
            return np.zeros((len(docs), 1))
        T = self.tfidf_.transform(docs)
        A = self.svd_.transform(T)
        return A if self.score_ is None else np.hstack([A, self.score_.transform(T)])


def date_parts(s: pd.Series, name: str) -> dict[str, pd.Series]:
    """A date column as a person reads it: year, month, day of the week, and days since 1970 (the trend)."""
    d = parse_dates(s)
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert("UTC").dt.tz_localize(None)
    days = (d - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
    return {
        f"{name}_year": d.dt.year.astype("float64"),
        f"{name}_month": d.dt.month.astype("float64"),
        f"{name}_dayofweek": d.dt.day_of_week.astype("float64"),
        f"{name}_days": days.astype("float64"),
    }


def _as_category(s: pd.Series) -> pd.Series:
    vals = s.astype(object)
    missing = s.isna().to_numpy()
    strs = np.array([MISSING if m else str(v) for v, m in zip(vals.to_numpy(), missing, strict=True)], dtype=object)
    return pd.Series(strs, index=s.index, dtype=object)


class SkewLog1p(BaseEstimator, TransformerMixin):
    """log1p of the columns that are non-negative and right-skewed on the training rows."""

    def __init__(self, threshold: float = 0.75):
        self.threshold = threshold

    def fit(self, X: Any, y: Any = None) -> SkewLog1p:
        X = np.asarray(X, dtype="float64")
        self.columns_ = np.zeros(X.shape[1], dtype=bool)
        for j in range(X.shape[1]):
            col = X[:, j]
            col = col[np.isfinite(col)]
            if len(col) > 2 and col.min() >= 0 and np.unique(col).size > 2:
                self.columns_[j] = pd.Series(col).skew() > self.threshold
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = np.array(X, dtype="float64", copy=True)
        X[:, self.columns_] = np.log1p(np.maximum(X[:, self.columns_], 0))
        return X


class Winsorize(BaseEstimator, TransformerMixin):
    """Clip each column to its training quantiles [q, 1-q]: no linear extrapolation far outside training."""

    def __init__(self, q: float = 0.01):
        self.q = q

    def fit(self, X: Any, y: Any = None) -> Winsorize:
        X = np.asarray(X, dtype="float64")
        self.lo_ = np.nanquantile(X, self.q, axis=0) if len(X) else np.zeros(X.shape[1])
        self.hi_ = np.nanquantile(X, 1 - self.q, axis=0) if len(X) else np.zeros(X.shape[1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X, dtype="float64"), self.lo_, self.hi_)


def _onehot(min_frequency: int | float) -> OneHotEncoder:
    return OneHotEncoder(
        handle_unknown="infrequent_if_exist",
        min_frequency=min_frequency,
        max_categories=64,
        sparse_output=False,
        dtype=np.float32,
    )


def dense_preprocessor(ff: FeatureFrame, winsor_q: float = 0.01, task: str | None = None) -> ColumnTransformer:
    """For the network and linear models: impute, log1p skewed, winsorize, standardize, one-hot. ``task``: the
    target's kind, for the text columns' supervised score (fitted when ``fit_transform`` is given the target)."""
    num = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("log1p", SkewLog1p()),
            ("winsorize", Winsorize(winsor_q)),
            ("scale", StandardScaler()),
        ]
    )
    parts = []
    if ff.numeric:
        parts.append(("num", num, ff.numeric))
    if ff.categorical:
        parts.append(("cat", _onehot(3), ff.categorical))
    for i, c in enumerate(ff.text):  # a scalar column name: the encoder gets the column as one sequence
        parts.append((f"text{i}", Pipeline([("svd", TextSVD(task=task)), ("scale", StandardScaler())]), c))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def tree_preprocessor(ff: FeatureFrame, native: bool = True, task: str | None = None) -> ColumnTransformer:
    """For gradient boosting: numbers as they are (NaN is handled natively) and categories either as
    integer codes for LightGBM's native categorical splits (``native``; the numeric columns come first,
    then one code column per categorical column; unseen categories become NaN) or one-hot. ``task``: as for
    :func:`dense_preprocessor`."""
    parts = []
    if ff.numeric:
        parts.append(("num", "passthrough", ff.numeric))
    if ff.categorical:
        enc = (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, dtype=np.float64,
                              min_frequency=5)
               if native else _onehot(5))
        parts.append(("cat", enc, ff.categorical))
    for i, c in enumerate(ff.text):  # after the categories: their codes keep their column positions
        parts.append((f"text{i}", TextSVD(task=task), c))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)

"""The data rules TM101-TM115: pure detectors on DataFrames, each returning at most one Finding.

    from trainmedic.tabular import check_data
    findings = check_data("train.csv", target="SalePrice", test="test.csv")

One finding per rule: the columns, counts and example values it concerns are in its evidence. A detector
that raises is switched off and reported as TM901; check-data itself never crashes on odd data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.errors import UsageError
from trainmedic.findings import Finding
from trainmedic.rules import data as R
from trainmedic.rules.internal import CHECK_FAILED
from trainmedic.tabular.io import ReadReport, load_frame
from trainmedic.tabular.preprocess import NUMERIC_TEXT_SHARE, column_role, is_id_like, numeric_text_share
from trainmedic.tabular.target import TargetInfo, infer_task, target_array

SMALL_DATA_ROWS = 10_000
OUTLIER_Z = 10.0
IMBALANCE_RATIO = 0.1
SCALE_RATIO = 1e3
OFFSET_RATIO = 10.0
MAX_LISTED = 20


def check_data(data: Any, target: str | None = None, test: Any = None) -> list[Finding]:
    """Run every data rule on a CSV/Parquet path or a DataFrame (and optionally a test file)."""
    df, rep = load_frame(data, "training")
    if target is not None and target not in df.columns:
        import difflib

        near = difflib.get_close_matches(target, list(df.columns), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise UsageError(f"target column {target!r} not found in {rep.source} (columns: "
                         f"{', '.join(map(repr, list(df.columns)[:8]))}{'...' if df.shape[1] > 8 else ''}){hint}")
    test_df = test_rep = None
    if test is not None:
        test_df, test_rep = load_frame(test, "test")
    return check_frame(df, target=target, test=test_df, report=rep, test_report=test_rep)


def check_frame(
    df: pd.DataFrame,
    target: str | None = None,
    test: pd.DataFrame | None = None,
    report: ReadReport | None = None,
    test_report: ReadReport | None = None,
    info: TargetInfo | None = None,
) -> list[Finding]:
    ctx = _Context(df, target, test, report, test_report, info)
    findings: list[Finding] = []
    for det in DETECTORS:
        try:
            f = det(ctx)
        except Exception as exc:  # a detector bug must not take check-data down
            f = Finding(CHECK_FAILED.code, f"data check {det.__name__} raised {type(exc).__name__}: {exc}",
                        evidence={"check": det.__name__, "exception": repr(exc)})
        if f is not None:
            findings.append(f)
    return findings


class _Context:
    """What several detectors need, computed once."""

    def __init__(self, df, target, test, report, test_report, info) -> None:
        self.df = df
        self.n = len(df)
        self.target = target
        self.test = test
        self.report = report
        self.test_report = test_report
        self.y = df[target] if target is not None else None
        self.info = info
        self.info_error: str | None = None
        if target is not None and info is None:
            try:
                self.info = infer_task(df[target])
            except UsageError as exc:
                self.info_error = str(exc)
        self.features = [c for c in df.columns if c != target]
        self.index_cols = [c for c in self.features if _is_index_column(df[c], c, self.n)]
        self.id_cols = [c for c in self.features if c not in self.index_cols and is_id_like(df[c], self.n)
                        and column_role(df[c], c, self.n) == "identifier"]
        self.model_features = [c for c in self.features if c not in self.index_cols and c not in self.id_cols]
        self.numeric = [c for c in self.model_features if pd.api.types.is_numeric_dtype(df[c])
                        and not pd.api.types.is_bool_dtype(df[c])]


def _is_index_column(s: pd.Series, name: str, n: int) -> bool:
    if re.fullmatch(r"Unnamed: \d+", name):
        return True
    if n < 3 or not pd.api.types.is_integer_dtype(s):
        return False
    if name.lower() in ("id", "ids", "key") or name.lower().endswith("id"):
        return False  # a named identifier: TM106
    v = s.to_numpy()
    return bool(np.array_equal(v, np.arange(n)) or np.array_equal(v, np.arange(1, n + 1)))


def _fmt_cols(d: dict[str, Any], fmt: Callable[[Any], str], k: int = 5) -> str:
    items = list(d.items())
    s = ", ".join(f"{c} {fmt(v)}" for c, v in items[:k])
    return s + (f", and {len(items) - k} more" if len(items) > k else "")


def _top(d: dict[str, Any], key: Callable[[Any], float]) -> dict[str, Any]:
    return dict(sorted(d.items(), key=lambda kv: -key(kv[1]))[:MAX_LISTED])


def _examples(values: Any, k: int = 5) -> list[Any]:
    out = []
    for v in list(values)[:k]:
        out.append(v.item() if hasattr(v, "item") else v)
    return out


# ---- TM101 -------------------------------------------------------------------------------------------
def nonfinite_features(ctx: _Context) -> Finding | None:
    per: dict[str, dict[str, int]] = {}
    rows = np.zeros(ctx.n, dtype=bool)
    for c in ctx.features:
        s = ctx.df[c]
        miss = s.isna().to_numpy()
        if miss.all():
            continue  # TM105
        entry: dict[str, int] = {}
        if miss.any():
            entry["missing"] = int(miss.sum())
        bad = miss.copy()
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            inf = np.isinf(s.to_numpy(dtype="float64", na_value=np.nan))
            if inf.any():
                entry["inf"] = int(inf.sum())
                bad |= inf
        elif not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s):
            empty = s.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
            if empty.any():
                entry["empty_string"] = int(empty.sum())
                bad |= empty
        if entry:
            entry["total"] = int(bad.sum())
            per[c] = entry
            rows |= bad
    if not per:
        return None
    per = _top(per, lambda e: e["total"])
    msg = (f"{len(per)} feature column(s) hold missing or non-finite values, in {int(rows.sum())} of {ctx.n} rows: "
           + _fmt_cols(per, lambda e: f"{e['total']} ({e['total'] / ctx.n:.0%})"))
    return Finding(R.NONFINITE_FEATURES.code, msg,
                   evidence={"columns": per, "rows_affected": int(rows.sum()), "rows": ctx.n},
                   action="impute inside each fold (fit does: median + indicator, 'missing' category)")


# ---- TM102 -------------------------------------------------------------------------------------------
def bad_target(ctx: _Context) -> Finding | None:
    if ctx.target is None:
        return None
    y = ctx.y
    if ctx.info_error:
        return Finding(R.BAD_TARGET.code, ctx.info_error, evidence={"target": ctx.target})
    ev: dict[str, Any] = {"target": ctx.target}
    missing = int(y.isna().sum())
    if not pd.api.types.is_numeric_dtype(y):
        missing += int(y.astype("string").str.strip().eq("").fillna(False).sum())
    if missing:
        ev["missing"] = missing
    kind = ctx.info.kind if ctx.info else None
    if kind and kind not in ("binary", "multiclass"):
        vals, ok = target_array(y, ctx.info)
        present = y.notna().to_numpy()
        bad = present & ~ok
        if pd.api.types.is_numeric_dtype(y):
            inf = np.isinf(y.to_numpy(dtype="float64", na_value=np.nan))
            if inf.any():
                ev["non_finite"] = int(inf.sum())
            other = bad & ~inf
        else:
            other = bad
        if other.any():
            ev["unparsable_or_invalid"] = int(other.sum())
            ev["examples"] = _examples(y[other].astype(str).unique())
    if len(ev) == 1:
        return None
    total = sum(v for k, v in ev.items() if k in ("missing", "non_finite", "unparsable_or_invalid"))
    parts = [f"{v} {k.replace('_', ' ')}" for k, v in ev.items() if k in ("missing", "non_finite", "unparsable_or_invalid")]
    msg = f"target {ctx.target!r} is unusable in {total} of {ctx.n} rows: {', '.join(parts)}"
    if "examples" in ev:
        msg += f" (e.g. {', '.join(map(repr, ev['examples'][:3]))})"
    return Finding(R.BAD_TARGET.code, msg, evidence=ev, action="drop those rows or fix the parsing (fit drops them)")


# ---- TM103 -------------------------------------------------------------------------------------------
def numbers_as_text(ctx: _Context) -> Finding | None:
    per: dict[str, dict[str, Any]] = {}
    for c in ctx.df.columns:
        s = ctx.df[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s):
            continue
        share, bad = numeric_text_share(s)
        if share >= NUMERIC_TEXT_SHARE:
            per[c] = {"numeric_share": round(share, 4), "not_numbers": _examples(bad.astype(str).unique()),
                      "examples": _examples(s.dropna().astype(str).unique())}
    converted = dict(ctx.report.converted) if ctx.report is not None else {}
    if not per and not converted:
        return None
    ev: dict[str, Any] = {"columns": per}
    if converted:
        ev["converted_on_read"] = converted
    if per:
        msg = ("text column(s) whose values are numbers: "
               + _fmt_cols(per, lambda e: f"({e['numeric_share']:.0%} numbers"
                           + (f"; not: {', '.join(map(repr, e['not_numbers'][:3]))})" if e["not_numbers"] else ")")))
        if converted:
            msg += f"; also read as numbers after removing thousands separators: {', '.join(converted)}"
        return Finding(R.NUMBERS_AS_TEXT.code, msg, evidence=ev, action="convert with pd.to_numeric (fit does)")
    msg = (f"column(s) {', '.join(converted)} hold numbers written with thousands separators; trainmedic read "
           f"them as numbers, pandas' default would keep them as text (use thousands=',')")
    return Finding(R.NUMBERS_AS_TEXT.code, msg, evidence=ev, severity="info")


# ---- TM104 -------------------------------------------------------------------------------------------
def index_column(ctx: _Context) -> Finding | None:
    if not ctx.index_cols:
        return None
    why = {c: ("named like a saved index" if c.startswith("Unnamed") else "equal to the row number")
           for c in ctx.index_cols}
    msg = f"column(s) {', '.join(repr(c) for c in ctx.index_cols)} look like a saved DataFrame index ({', '.join(why.values())})"
    return Finding(R.INDEX_COLUMN.code, msg, evidence={"columns": why},
                   action="read with index_col=0 or drop the column (fit drops it)")


# ---- TM105 -------------------------------------------------------------------------------------------
def useless_column(ctx: _Context) -> Finding | None:
    empty, const = [], {}
    for c in ctx.features:
        s = ctx.df[c]
        nun = s.nunique(dropna=True)
        if nun == 0:
            empty.append(c)
        elif nun == 1 and not s.isna().any():
            v = s.iloc[0]
            const[c] = v.item() if hasattr(v, "item") else v
    if not empty and not const:
        return None
    parts = []
    if empty:
        parts.append(f"entirely missing: {', '.join(map(repr, empty[:8]))}")
    if const:
        parts.append("constant: " + ", ".join(f"{c!r} (= {v!r})" for c, v in list(const.items())[:8]))
    return Finding(R.USELESS_COLUMN.code, "column(s) carry no information; " + "; ".join(parts),
                   evidence={"all_missing": empty, "constant": const}, action="drop them (fit does)")


# ---- TM106 -------------------------------------------------------------------------------------------
def id_like_column(ctx: _Context) -> Finding | None:
    if not ctx.id_cols:
        return None
    ev = {c: _examples(ctx.df[c].head(3)) for c in ctx.id_cols}
    msg = (f"column(s) {', '.join(repr(c) for c in ctx.id_cols)} take a different value on every row: "
           f"identifiers, a shortcut or leak if used as features")
    return Finding(R.ID_LIKE_COLUMN.code, msg, evidence={"columns": ev},
                   action="keep out of the features (fit drops them, and uses the id for submission.csv)")


# ---- TM118 -------------------------------------------------------------------------------------------
def free_text_column(ctx: _Context) -> Finding | None:
    """The same question fit asks (``column_role``), so check-data flags exactly the columns fit leaves out."""
    cols = [c for c in ctx.features if c not in ctx.index_cols and c not in ctx.id_cols
            and column_role(ctx.df[c], c, ctx.n) == "free text"]
    if not cols:
        return None
    ev = {c: _examples(ctx.df[c].dropna().head(2)) for c in cols}
    msg = f"column(s) {', '.join(repr(c) for c in cols)} hold free text (mostly distinct sentences)"
    return Finding(R.FREE_TEXT_COLUMN.code, msg, evidence={"columns": ev},
                   action="fit leaves it out; `fit --text COLUMN` keeps it as TF-IDF components fitted in the folds")


# ---- TM107 -------------------------------------------------------------------------------------------
def duplicates(ctx: _Context) -> Finding | None:
    feats = ctx.model_features
    if not feats:
        return None
    cols = feats + ([ctx.target] if ctx.target else [])
    d = ctx.df[cols]
    dup_rows = d.duplicated(keep="first")
    ev: dict[str, Any] = {}
    if dup_rows.any():
        ev["duplicate_rows"] = int(dup_rows.sum())
        ev["examples"] = [int(i) for i in np.flatnonzero(dup_rows.to_numpy())[:10]]
    if ctx.target is not None:
        g = ctx.df[feats + [ctx.target]].assign(__t=ctx.df[ctx.target].astype(str))
        dup_feat = g.duplicated(subset=feats, keep=False)
        if dup_feat.any():
            sub = g[dup_feat]
            # pandas groupby drops NaN keys by default; features with NaN still count as equal here
            keys = sub[feats].astype(str).agg("\x1f".join, axis=1)
            nun = sub.groupby(keys)["__t"].nunique()
            conflicting = nun[nun > 1]
            if len(conflicting):
                ev["conflicting_label_groups"] = int(len(conflicting))
                ev["conflicting_rows"] = int(keys.isin(conflicting.index).sum())
    if not ev:
        return None
    parts = []
    if "duplicate_rows" in ev:
        parts.append(f"{ev['duplicate_rows']} duplicate row(s) (e.g. rows {', '.join(map(str, ev['examples'][:5]))})")
    if "conflicting_rows" in ev:
        parts.append(f"{ev['conflicting_rows']} rows in {ev['conflicting_label_groups']} group(s) with the same features and different labels")
    if ctx.id_cols or ctx.index_cols:
        ev["ignored_columns"] = ctx.id_cols + ctx.index_cols
    return Finding(R.DUPLICATES.code, "; ".join(parts), evidence=ev,
                   action="deduplicate, or keep duplicates in the same fold (GroupKFold)")


# ---- TM108 -------------------------------------------------------------------------------------------
def unscaled_features(ctx: _Context) -> Finding | None:
    scales: dict[str, float] = {}
    offsets: dict[str, float] = {}
    for c in ctx.numeric:
        v = ctx.df[c].to_numpy(dtype="float64", na_value=np.nan)
        v = v[np.isfinite(v)]
        if len(v) < 3 or np.unique(v).size < 3:
            continue
        sd = float(np.std(v))
        if sd <= 0:
            continue
        scales[c] = sd
        ratio = abs(float(np.mean(v))) / sd
        if ratio > OFFSET_RATIO:
            offsets[c] = round(ratio, 1)
    if len(scales) < 1:
        return None
    big, small = max(scales, key=scales.get), min(scales, key=scales.get)
    ratio = scales[big] / scales[small]
    if ratio <= SCALE_RATIO and not offsets:
        return None
    parts = []
    ev: dict[str, Any] = {}
    if ratio > SCALE_RATIO:
        parts.append(f"standard deviations range from {scales[small]:.3g} ({small}) to {scales[big]:.3g} ({big}), "
                     f"a factor {ratio:.3g}")
        ev.update({"largest": {big: scales[big]}, "smallest": {small: scales[small]}, "ratio": ratio})
    if offsets:
        offsets = _top(offsets, float)
        parts.append("far from zero mean (|mean|/std > 10): " + ", ".join(list(offsets)[:5]))
        ev["off_center"] = offsets
    return Finding(R.UNSCALED_FEATURES.code, "numeric features are not on a common scale: " + "; ".join(parts),
                   evidence=ev, action="standardize with training-fold statistics (fit does)")


# ---- TM109 -------------------------------------------------------------------------------------------
def outliers(ctx: _Context) -> Finding | None:
    per: dict[str, dict[str, Any]] = {}
    cols = list(ctx.numeric)
    if ctx.target is not None and pd.api.types.is_numeric_dtype(ctx.df[ctx.target]) and not (
        ctx.info and ctx.info.kind in ("binary", "multiclass")
    ):
        cols.append(ctx.target)
    for c in cols:
        v = ctx.df[c].to_numpy(dtype="float64", na_value=np.nan)
        fin = np.isfinite(v)
        if fin.sum() < 10 or np.unique(v[fin]).size < 10:
            continue
        med = np.median(v[fin])
        mad = np.median(np.abs(v[fin] - med)) * 1.4826
        if mad <= 0:
            continue
        z = np.where(fin, np.abs(v - med) / mad, 0.0)
        hit = np.flatnonzero(z > OUTLIER_Z)
        if len(hit):
            order = hit[np.argsort(-z[hit])][:5]
            per[c] = {"count": int(len(hit)), "max_z": round(float(z[order[0]]), 1),
                      "examples": [{"row": int(i), "value": float(v[i]), "z": round(float(z[i]), 1)} for i in order],
                      "median": float(med)}
    if not per:
        return None
    per = _top(per, lambda e: e["max_z"])
    in_target = ctx.target in per
    msg = (f"{len(per)} column(s) have values more than {OUTLIER_Z:g} robust standard deviations from the median"
           + (f", including the target {ctx.target!r}" if in_target else "") + ": "
           + _fmt_cols(per, lambda e: f"({e['count']}, max z {e['max_z']:g})"))
    return Finding(R.OUTLIERS.code, msg, evidence={"columns": per, "threshold_z": OUTLIER_Z},
                   action="inspect the rows named; drop only with evidence, never from validation")


# ---- TM110 -------------------------------------------------------------------------------------------
def class_imbalance(ctx: _Context) -> Finding | None:
    if ctx.info is None or ctx.info.kind not in ("binary", "multiclass"):
        return None
    counts = ctx.y.dropna().astype(str).value_counts()
    if len(counts) < 2:
        return None
    ratio = counts.iloc[-1] / counts.iloc[0]
    if ratio >= IMBALANCE_RATIO:
        return None
    msg = (f"target {ctx.target!r} is imbalanced: smallest class {counts.index[-1]!r} has {counts.iloc[-1]} rows, "
           f"largest {counts.index[0]!r} {counts.iloc[0]} (ratio {ratio:.3f})")
    return Finding(R.CLASS_IMBALANCE.code, msg,
                   evidence={"counts": {str(k): int(v) for k, v in counts.items()}, "ratio": float(ratio)},
                   action="judge by log-loss / balanced metrics; stratified folds (fit does)")


# ---- TM111 / TM112 -------------------------------------------------------------------------------------
def _numeric_target(ctx: _Context) -> np.ndarray | None:
    if ctx.target is None or ctx.info is None:
        return None
    v = pd.to_numeric(ctx.y, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    v = v[np.isfinite(v)]
    return v if len(v) else None


def sparse_count_target(ctx: _Context) -> Finding | None:
    v = _numeric_target(ctx)
    if v is None or ctx.info.kind != "count":
        return None
    zeros, mean = float(np.mean(v == 0)), float(np.mean(v))
    if zeros < 0.5 and mean >= 2:
        return None
    vc = pd.Series(v).value_counts().sort_index()
    msg = (f"target {ctx.target!r} is a sparse count: {zeros:.0%} zeros, mean {mean:.3g}, max {v.max():g}; "
           f"MSE + rounding serves it badly")
    return Finding(R.SPARSE_COUNT_TARGET.code, msg,
                   evidence={"zero_fraction": zeros, "mean": mean, "max": float(v.max()),
                             "distribution": {str(int(k)): int(c) for k, c in list(vc.items())[:12]}},
                   action="Poisson NLL on a log-rate and a distribution over counts (fit --task count)")


def skewed_positive_target(ctx: _Context) -> Finding | None:
    v = _numeric_target(ctx)
    if v is None or ctx.info.kind not in ("log-regression", "regression") or v.min() <= 0:
        return None
    skew = float(pd.Series(v).skew())
    ratio = float(v.max() / v.min())
    if skew <= 1 and ratio <= 100:
        return None
    msg = (f"target {ctx.target!r} is positive and right-skewed (skew {skew:.2f}, max/min {ratio:.3g}); "
           f"train on log(y) and judge by log-RMSE")
    return Finding(R.SKEWED_POSITIVE_TARGET.code, msg,
                   evidence={"skew": skew, "max_over_min": ratio, "min": float(v.min()), "max": float(v.max()),
                             "skew_of_log": float(pd.Series(np.log(v)).skew())},
                   action="log-regression (fit chooses it)")


# ---- TM113 -------------------------------------------------------------------------------------------
def small_data(ctx: _Context) -> Finding | None:
    if ctx.n >= SMALL_DATA_ROWS:
        return None
    return Finding(R.SMALL_DATA.code,
                   f"{ctx.n} rows (under {SMALL_DATA_ROWS:,}): gradient boosting is likely to match or beat a network",
                   evidence={"rows": ctx.n, "threshold": SMALL_DATA_ROWS},
                   action="compare with LightGBM on the same folds (fit does, and blends)")


# ---- TM114 -------------------------------------------------------------------------------------------
def train_test_mismatch(ctx: _Context) -> Finding | None:
    if ctx.test is None:
        return None
    tr, te = ctx.df, ctx.test
    missing = [c for c in ctx.features if c not in te.columns]
    extra = [c for c in te.columns if c not in tr.columns]
    kinds, cats = {}, {}
    for c in ctx.features:
        if c not in te.columns:
            continue
        a, b = tr[c], te[c]
        if b.isna().all() or a.isna().all():
            continue
        na, nb = pd.api.types.is_numeric_dtype(a), pd.api.types.is_numeric_dtype(b)
        if na != nb:
            kinds[c] = {"train": str(a.dtype), "test": str(b.dtype)}
        elif not na and c not in ctx.id_cols:
            seen = set(a.dropna().astype(str))
            bs = b.dropna().astype(str)
            new = bs[~bs.isin(seen)]
            if len(new):
                cats[c] = {"unseen": _examples(new.value_counts().index, 5), "rows": int(len(new))}
    if not (missing or extra or kinds or cats):
        return None
    parts, ev = [], {}
    if missing:
        parts.append(f"missing from test: {', '.join(map(repr, missing[:8]))}")
        ev["missing_in_test"] = missing
    if extra:
        parts.append(f"only in test: {', '.join(map(repr, extra[:8]))}")
        ev["extra_in_test"] = extra
    if kinds:
        parts.append("numeric in one file, text in the other: " + ", ".join(kinds))
        ev["dtype_mismatch"] = kinds
    if cats:
        cats = _top(cats, lambda e: e["rows"])
        parts.append("categories unseen in training: "
                     + _fmt_cols(cats, lambda e: f"{', '.join(map(repr, e['unseen'][:3]))} ({e['rows']} rows)", 4))
        ev["unseen_categories"] = cats
    severe = bool(missing or kinds)
    return Finding(R.TRAIN_TEST_MISMATCH.code, "test file differs from training: " + "; ".join(parts), evidence=ev,
                   severity="error" if severe else "warning",
                   action="align columns and parsing; unseen categories are ignored by the one-hot encoder")


# ---- TM115 -------------------------------------------------------------------------------------------
def missing_means_none(ctx: _Context) -> Finding | None:
    per: dict[str, dict[str, dict[str, int]]] = {}
    for rep, which in ((ctx.report, "train"), (ctx.test_report, "test")):
        if rep is not None:
            for c, toks in rep.na_literals.items():
                per.setdefault(c, {})[which] = dict(toks)
    if not per:
        return None

    def total(d: dict[str, dict[str, int]]) -> int:
        return sum(sum(t.values()) for t in d.values())

    ordered = dict(sorted(per.items(), key=lambda kv: (not any("None" in t for t in kv[1].values()), -total(kv[1]))))

    def show(d: dict[str, dict[str, int]]) -> str:
        toks = d.get("train") or d.get("test") or {}
        return "(" + ", ".join(f"{t!r} x{k}" for t, k in toks.items()) + ")"

    msg = ("categories spelled like missing values, which pandas reads as NaN by default, were kept as categories: "
           + _fmt_cols(ordered, show, 4))
    return Finding(R.MISSING_MEANS_NONE.code, msg, evidence={"columns": ordered},
                   action="read with keep_default_na=False, na_values=[''] (trainmedic does for text columns)")


DETECTORS: tuple[Callable[[_Context], Finding | None], ...] = (
    nonfinite_features,
    bad_target,
    numbers_as_text,
    index_column,
    useless_column,
    id_like_column,
    free_text_column,
    duplicates,
    unscaled_features,
    outliers,
    class_imbalance,
    sparse_count_target,
    skewed_positive_target,
    small_data,
    train_test_mismatch,
    missing_means_none,
)

__all__ = ["DETECTORS", "check_data", "check_frame"]

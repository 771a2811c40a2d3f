"""``trainmedic fit``: K-fold cross-validated models for a table, the right way for the kind of target.

    from trainmedic.tabular import fit_table
    result = fit_table("train.csv", target="SalePrice", test="test.csv", out="runs/house")
    result.cv["mean"]                      # the blend's mean fold score

Everything is validated before anything is written: on bad input a :class:`~trainmedic.errors.UsageError`
is raised and ``out`` is left untouched. Preprocessing is fitted inside each fold on its training rows;
the MLP trains under ``Medic(mode="heal")``; LightGBM and a linear model are trained on the same folds and
blended with weights chosen on out-of-fold predictions.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.errors import UsageError
from trainmedic.findings import Finding, jsonable
from trainmedic.tabular import blend as B
from trainmedic.tabular.checks import check_frame
from trainmedic.tabular.io import ReadReport, load_frame
from trainmedic.tabular.models import GBMConfig, LightGBMModel, LinearModel, MLPConfig, MLPModel, subset_frame
from trainmedic.tabular.outdir import check_writable_dir, commit_files
from trainmedic.tabular.preprocess import (
    FREE_TEXT,
    FeatureFrame,
    column_role,
    find_id_column,
    prepare_features,
)
from trainmedic.tabular.progress import FitProgress
from trainmedic.tabular.target import TASKS, TargetInfo, resolve_task, target_array

MODEL_NAMES = ("mlp", "lightgbm", "linear")
# The share of --time-budget kept after the models' trainings for what follows them: the last fold's
# predictions, permutation importance (which stops before a fold that would cross the budget), the blend and
# the writing. A tenth was too little on 200k rows (importance alone took 11 % of the budget; the fit ended
# 0.3 % over it).
BUDGET_RESERVE = 0.2
DENSE = ("mlp", "linear")  # models on the scaled one-hot matrix, sensitive to high-leverage rows


@dataclass
class FitConfig:
    folds: int = 5
    seed: int = 0
    task: str | None = None
    models: tuple[str, ...] = MODEL_NAMES
    mlp: MLPConfig = field(default_factory=MLPConfig)
    gbm: GBMConfig = field(default_factory=GBMConfig)
    inner_fraction: float = 0.15
    # Training rows whose target is further than this many robust standard deviations from its
    # cross-fitted linear prediction are left out of the training rows of the linear model and the MLP
    # (never out of validation; trees keep them: a tree cannot be pulled far by one row, and dropping
    # rows it learns from makes their look-alikes in validation worse). None or 0 switches it off.
    # Regression tasks only.
    trim_z: float | None = 4.0
    # Seconds for the whole fit, reading included. The models' training gets what is left of it after the
    # reading and checks, less a fifth (BUDGET_RESERVE) kept for permutation importance and writing; each
    # (fold, model) gets an equal share of what is left when it starts (the linear member none: it is fitted
    # on a sample of at most linear_budget_rows rows and takes what it takes), and the network and LightGBM
    # stop there with the best model so far (cv.json counts the stops); importance stops before a fold that
    # would run out of time.
    # None: no limit.
    time_budget: float | None = None
    # Under --time-budget, the linear member is fitted on at most this many of a fold's training rows (a
    # sample, by class for classes: budget_sample). A model with one coefficient per prepared column reaches
    # its accuracy long before that: on the 200k x 50 speed file (fold 0, 160,000 training rows) it took 11.1 s
    # on all of them and 1.3 s on 20,000, log-loss 0.4627 and 0.4638, and the blend gives it almost no weight
    # there; the network and LightGBM, which keep improving with rows and time, get the seconds. cv.json:
    # linear_budget_sample. Without a budget the linear member sees every training row.
    linear_budget_rows: int = 20_000
    importance: bool = True  # permutation importance on out-of-fold rows (cv.json and the report)
    threads: int = 1  # LightGBM threads; more only pays on large data (and hurts on a busy machine)
    # fit --search N: an Optuna study of N trials per model in each fold, choosing on an inner split of the
    # fold's training rows (search.py); 0: the default settings
    search: int = 0
    # fit --select: a cross-validated feature selection in each fold, kept only when it helps there (select.py)
    select: bool = False
    # fit --text COL: free-text columns kept (TF-IDF -> SVD components + a cross-fitted score, in the folds)
    text: tuple[str, ...] = ()
    # True: bars on a terminal, log lines otherwise; "bars", "lines" force one; False or "off": silent
    progress: bool | str = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        d["text"] = list(self.text)
        return d


@dataclass
class FitResult:
    cv: dict[str, Any]
    findings: list[Finding]
    oof: dict[str, Any]
    y: np.ndarray
    info: TargetInfo
    submission: pd.DataFrame | None = None
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)  # data for the report's figures (not in cv.json)


# ----------------------------------------------------------------------------------------------------------
# validation: everything that can make the input unusable is checked here, before any work or writing
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    df: pd.DataFrame
    report: ReadReport
    target: str
    info: TargetInfo
    y: np.ndarray
    rows: np.ndarray  # positions of the usable training rows in df
    features: FeatureFrame
    id_col: str | None
    dropped_cols: dict[str, str]
    test_df: pd.DataFrame | None = None
    test_report: ReadReport | None = None
    test_features: FeatureFrame | None = None
    test_ids: pd.Series | None = None


def _close(name: str, options: list[str]) -> str:
    import difflib

    m = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    low = [c for c in options if c.lower() == name.lower()]
    m = low + [c for c in m if c not in low]
    return f"; did you mean {', '.join(repr(c) for c in m)}?" if m else ""


def _cols(cols: list[str], k: int = 6) -> str:
    shown = ", ".join(repr(c) for c in cols[:k])
    return shown + (f" and {len(cols) - k} more" if len(cols) > k else "")


def prepare(data: Any, target: str, test: Any = None, config: FitConfig | None = None) -> Prepared:
    cfg = config or FitConfig()
    if cfg.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {cfg.folds}")
    if not 0 <= int(cfg.seed) < 2**31:
        raise UsageError(f"--seed must be a whole number from 0 to {2**31 - 1}, got {cfg.seed}")
    if int(cfg.search) < 0:
        raise UsageError(f"--search must be a number of trials (0 or more), got {cfg.search}")
    if cfg.task not in (None, "", "auto") and cfg.task not in TASKS:
        raise UsageError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    unknown = [m for m in cfg.models if m not in MODEL_NAMES]
    if unknown or not cfg.models:
        raise UsageError(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}")
    df, rep = load_frame(data, "training")
    if not target:
        raise UsageError("no target column given; pass --target COLUMN")
    if target not in df.columns:
        raise UsageError(
            f"target column {target!r} not found in {rep.source} (columns: {_cols(list(df.columns))})"
            + _close(target, list(df.columns))
        )
    if df.shape[1] < 2:
        raise UsageError(f"{rep.source} has only the target column; there are no features to learn from")
    test_df = test_rep = None
    if test is not None:
        test_df, test_rep = load_frame(test, "test")
        train_feats = [c for c in df.columns if c != target]
        missing = [c for c in train_feats if c not in test_df.columns]
        extra = [c for c in test_df.columns if c not in df.columns]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {_cols(missing)}")
            if extra:
                parts.append(f"extra {_cols(extra)}")
            raise UsageError(
                f"test file {test_rep.source} has different columns from the training file "
                f"({'; '.join(parts)}); give a test file with the training columns (the target may be absent)"
            )
    info = resolve_task(df[target], cfg.task)
    y_all, ok = target_array(df[target], info)
    rows = np.flatnonzero(ok)
    if info.kind == "log-regression":
        y_all = np.where(ok, np.log(np.where(ok, y_all, 1.0)), np.nan)
    min_rows = max(2 * cfg.folds, 10)
    if len(rows) < min_rows:
        raise UsageError(
            f"only {len(rows)} rows have a usable target {target!r} (need at least {min_rows} for "
            f"{cfg.folds}-fold cross-validation); check the target column"
        )
    if info.kind in ("binary", "multiclass"):
        counts = np.bincount(y_all[rows].astype(int), minlength=len(info.classes))
        if (counts > 0).sum() < 2:
            raise UsageError(f"target column {target!r} has a single class after dropping missing labels")
    id_col = find_id_column(df, target)
    text = [c for c in cfg.text if c]
    for c in text:
        if c == target or c not in df.columns:
            what = "is the target" if c == target else f"is not a column of {rep.source}"
            raise UsageError(f"--text {c!r} {what}" + ("" if c == target else _close(c, list(df.columns))))
        if pd.api.types.is_numeric_dtype(df[c]):
            # Numbers read as words would become TF-IDF tokens: the column is a feature as it is.
            raise UsageError(f"--text {c!r} holds numbers, not free text; leave it out of --text (fit uses it "
                             "as a numeric feature)")
    dropped: dict[str, str] = {}
    n = len(df)
    for c in df.columns:
        if c == target or c in text:
            continue
        if re.fullmatch(r"Unnamed: \d+", c):
            dropped[c] = "saved index column (TM104)"
            continue
        role = column_role(df[c], c, n)
        if role == "identifier":
            dropped[c] = "identifier, unique per row (TM106)"
        elif role == "free text":
            dropped[c] = FREE_TEXT
    ff = prepare_features(df.iloc[rows], drop=[target, *dropped], text=text)
    dropped.update(ff.dropped)
    if not ff.numeric and not ff.categorical and not ff.text:
        raise UsageError(
            f"no usable feature columns left in {rep.source} (dropped: {_cols(list(dropped))}); "
            f"the file needs columns other than the target and identifiers"
        )
    test_ff = test_ids = None
    if test_df is not None:
        test_ff = prepare_features(test_df, drop=[target, *dropped], reference=ff)
        if id_col is not None and id_col in test_df.columns:
            test_ids = test_df[id_col]
        else:
            test_ids = pd.Series(np.arange(len(test_df)), name="id")
    return Prepared(df, rep, target, info, y_all[rows], rows, ff, id_col, dropped,
                    test_df, test_rep, test_ff, test_ids)


# ----------------------------------------------------------------------------------------------------------
# cross-validation
# ----------------------------------------------------------------------------------------------------------
def fold_splits(p: Prepared, cfg: FitConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(p.y)
    if p.info.kind in ("binary", "multiclass"):
        counts = np.bincount(p.y.astype(int))
        if counts[counts > 0].min() >= cfg.folds:
            return list(StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(n), p.y))
    return list(KFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(n)))


def _inner(y: np.ndarray, kind: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (train, validation) split of a fold's training rows for early stopping and tuning."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = None
    if kind in ("binary", "multiclass"):
        counts = np.bincount(y.astype(int))
        if counts[counts > 0].min() >= 2:
            strat = y
    n_va = max(2, int(round(fraction * len(y))))
    itr, iva = train_test_split(idx, test_size=n_va, random_state=seed, stratify=strat)
    return np.sort(itr), np.sort(iva)


def _make_model(name: str, p: Prepared, cfg: FitConfig, seed: int, progress: Callable | None,
                conf: Any = None):
    """A model of ``name``; ``conf`` (from the search) replaces its configuration: an MLPConfig, a GBMConfig
    or the linear model's parameters."""
    k = len(p.info.classes)
    if name == "mlp":
        return MLPModel(p.info.kind, k, conf or cfg.mlp, seed=seed, threads=1, progress=progress)
    if name == "lightgbm":
        return LightGBMModel(p.info.kind, k, conf or cfg.gbm, seed=seed, threads=cfg.threads)
    return LinearModel(p.info.kind, k, seed=seed, params=conf)


def _primary(task: str, pred: Any, y: np.ndarray) -> float:
    """The judged metric of a prediction (lower is better)."""
    return next(iter(B.score(task, _oof_entry(task, pred, y), y).values()))


def _point_score(task: str, pred: Any, y: np.ndarray) -> float:
    """The judged metric of a point prediction (a count model's mean: Poisson deviance)."""
    if task == "count":
        return B.poisson_deviance(pred.mean if hasattr(pred, "mean") and not isinstance(pred, np.ndarray)
                                  else pred, y)
    return next(iter(B.score(task, pred, y).values()))


def _select(p: Prepared, cfg: FitConfig, names: list[str], k: int, tr: np.ndarray) -> Any:
    """``fit --select``: fold ``k``'s selection, chosen on its training rows ``tr`` only (select.py)."""
    from trainmedic.tabular import select as S

    task = p.info.kind
    seed = cfg.seed * 7919 + k
    kc = len(p.info.classes)
    gbm = S.probe_config(cfg.gbm, len(tr))  # a faster learning rate than the fit's: the probe ranks, it does not score
    probes = [lambda: LightGBMModel(task, kc, gbm, seed=seed, threads=cfg.threads)]
    if "linear" in names:
        probes.append(lambda: LinearModel(task, kc, seed=seed))
    y = p.y[tr]
    return S.select_features(
        subset_frame(p.features, tr), y, _inner(y, task, cfg.inner_fraction, cfg.seed + k), probes=probes,
        split=lambda yy: _inner(yy, task, cfg.inner_fraction, seed), seed=seed,
        score=lambda pred, yy: _point_score(task, pred, yy),
    )


def _searched_model(name: str, p: Prepared, cfg: FitConfig, k: int, X: FeatureFrame, y: np.ndarray,
                    inner: tuple[np.ndarray, np.ndarray], Xva: FeatureFrame, yva: np.ndarray,
                    prog: FitProgress, share: float | None) -> tuple[Any, dict[str, Any]]:
    """``fit --search``: the model with the settings its study chose on the fold's training rows ``X``
    (an inner split of them, never the validation fold), fitted on all of them.

    The default model is fitted first (the outer score without the search, and the model kept when the
    study keeps the default). ``share``: the seconds this (fold, model) may take under ``--time-budget``,
    a third each for the default model, the study and the chosen model (a model that finishes early leaves
    its time to the next).
    """
    from trainmedic.tabular import search as S

    task = p.info.kind
    seed = cfg.seed * 7919 + k
    end = None if share is None else time.perf_counter() + share

    def limit(model: Any, parts_left: int) -> Any:
        if end is not None and hasattr(model, "deadline"):
            now = time.perf_counter()
            model.deadline = now + max(0.0, end - now) / parts_left
        return model

    prog.model(k, name, cfg.mlp.max_epochs * cfg.mlp.bags if name == "mlp" else 1)
    default = limit(_make_model(name, p, cfg, seed, prog.epoch if name == "mlp" else None), 3)
    default.fit(X, y, inner)
    default_pred = default.predict(Xva)
    prog.model(k, name, cfg.search, unit="trial")  # the bar counts the trials; a line every 30 s off a terminal
    timeout = None if end is None else max(1.0, (end - time.perf_counter()) / 2)
    study = S.run_study(
        name, task, X, y, inner,
        make=lambda conf: _make_model(name, p, cfg, seed, None, conf),
        split=lambda yy: _inner(yy, task, cfg.inner_fraction, seed),
        score=lambda pred, yy: _primary(task, pred, yy),
        default=S.default_params(name, task, cfg.mlp, cfg.gbm), base=(cfg.mlp, cfg.gbm),
        trials=cfg.search, seed=seed, timeout=timeout, on_trial=prog.epoch,
    )
    study.default_outer_score = _primary(task, default_pred, yva)
    if study.chose_default:
        study.outer_score = study.default_outer_score
        return default, {"study": study, "pred": default_pred}
    conf = S.configure(name, study.params, cfg.mlp, cfg.gbm)
    model = _make_model(name, p, cfg, seed, prog.epoch if name == "mlp" else None, conf)
    if end is not None and hasattr(model, "deadline"):  # at least a third of the share, as the default had
        model.deadline = max(end, time.perf_counter() + share / 3)
    model.fit(X, y, inner)
    pred = model.predict(Xva)
    study.outer_score = _primary(task, pred, yva)
    return model, {"study": study, "pred": pred}


def _oof_entry(task: str, pred: Any, y: np.ndarray | None) -> Any:
    """Store a model's validation prediction in a task-specific, array-only form."""
    if task == "count":
        return pred.mean, (pred.logpmf(y) if y is not None else None)
    return pred


def cross_validate(p: Prepared, cfg: FitConfig, deadline: float | None = None) -> dict[str, Any]:
    """The folds. ``deadline`` (a ``time.perf_counter()`` value) shares the time left among the models."""
    task = p.info.kind
    folds = fold_splits(p, cfg)
    n = len(p.y)
    names = [m for m in MODEL_NAMES if m in cfg.models]
    oof: dict[str, Any] = {}
    fold_scores: dict[str, list[dict[str, float]]] = {m: [] for m in names}
    test_sum: dict[str, Any] = {}
    detail: dict[str, dict[str, list[Any]]] = {m: {"time_s": []} for m in names}
    medic_findings: list[tuple[int, Finding]] = []
    trimmed: list[list[int]] = []
    prog = FitProgress(_progress_mode(cfg.progress), len(folds), names)
    heal_events: list[list[dict[str, Any]]] = []
    curves: list[dict[str, list[float]]] = []
    fitted: dict[str, list[Any]] = {m: [] for m in names}
    # The (fold, model) trainings that share the time: without --search the linear member takes no share (it
    # cannot stop at one; under a budget it is fitted on a sample and takes a few seconds, from what is left),
    # so its time goes to the network and LightGBM in every fold rather than piling up in the last folds.
    shared = [m for m in names if cfg.search > 0 or m != "linear"] or names
    units_left = len(folds) * len(shared)
    studies: dict[str, list[Any]] = {}
    selections: list[Any] = []
    try:
        for k, (tr, va) in enumerate(folds):
            features = p.features
            if cfg.select:
                from trainmedic.tabular.select import feature_columns, keep_columns

                prog.note(f"fold {k + 1}/{len(folds)}: choosing features on the fold's training rows")
                sel = _select(p, cfg, names, k, tr)
                selections.append(sel)
                if sel.kept:
                    features = keep_columns(features, [c for c in feature_columns(features) if c not in sel.dropped])
            tr_dense = tr
            if cfg.trim_z and task in ("regression", "log-regression") and any(m in DENSE for m in names):
                keep = training_outliers(subset_frame(p.features, tr), p.y[tr], cfg.trim_z, cfg.seed + k)
                trimmed.append([int(i) for i in p.rows[tr[~keep]]])
                tr_dense = tr[keep]
            Xva, yva = subset_frame(features, va), p.y[va]
            for name in names:
                rows = tr_dense if name in DENSE else tr
                if name == "linear" and deadline is not None:
                    rows = budget_sample(rows, p.y, task, cfg.linear_budget_rows, cfg.seed * 7919 + k)
                Xtr, ytr = subset_frame(features, rows), p.y[rows]
                inner = _inner(ytr, task, cfg.inner_fraction, cfg.seed + k)
                share = None if deadline is None else max(0.0, deadline - time.perf_counter()) / max(1, units_left)
                units_left -= name in shared
                if cfg.search > 0:
                    model, found = _searched_model(name, p, cfg, k, Xtr, ytr, inner, Xva, yva, prog, share)
                    pred = found["pred"]
                    studies.setdefault(name, []).append(found["study"])
                else:
                    prog.model(k, name, cfg.mlp.max_epochs * cfg.mlp.bags if name == "mlp" else 1)
                    model = _make_model(name, p, cfg, cfg.seed * 7919 + k, prog.epoch if name == "mlp" else None)
                    if share is not None and hasattr(model, "deadline"):
                        model.deadline = time.perf_counter() + share
                    model.fit(Xtr, ytr, inner)
                    pred = model.predict(Xva)
                entry = _oof_entry(task, pred, yva)
                if name not in oof:
                    oof[name] = _empty_like(task, entry, n)
                _put(task, oof[name], va, entry)
                fold_scores[name].append(B.score(task, entry, yva))
                if p.test_features is not None:
                    tp = model.predict(p.test_features)
                    tp = tp.mean if task == "count" else tp
                    test_sum[name] = tp if name not in test_sum else test_sum[name] + tp
                fitted[name].append(model)
                if hasattr(model, "budget_stopped"):
                    detail[name].setdefault("budget_stopped", []).append(bool(model.budget_stopped))
                if name == "mlp":
                    detail[name].setdefault("rows_used", []).append(model.rows_used)
                detail[name]["time_s"].append(round(prog.model_done(), 3))
                detail[name].setdefault("train_rows", []).append(int(len(tr_dense if name in DENSE else tr)))
                if name == "linear" and deadline is not None:
                    detail[name].setdefault("rows_used", []).append(int(len(rows)))
                if name == "mlp":
                    detail[name].setdefault("epochs", []).append(model.epochs)
                    medic_findings.extend((k, f) for f in model.findings)
                    heal_events.append(model.heal_events[0] if model.heal_events else [])
                    curves.append({key: [round(float(v), 6) for v in vals] for key, vals in model.curves[0].items()})
                elif name == "lightgbm":
                    detail[name].setdefault("rounds", []).append(model.rounds)
                    if task == "count":
                        detail[name].setdefault("nb_alpha", []).append(round(model.alpha, 5))
                else:
                    detail[name].setdefault("regularization", []).append(model.reg)
                    if task == "count":
                        detail[name].setdefault("nb_alpha", []).append(round(model.alpha, 5))
            prog.fold_done()
    finally:
        prog.close()

    preds = [oof[m] for m in names]
    # The blend: weights chosen on all out-of-fold predictions (the usual stacking practice), applied to
    # each fold. "blend_crossfit" is the stricter variant: fold k is scored with weights chosen on the
    # other folds' out-of-fold predictions only; the gap between the two is the optimism of the weights.
    weights = B.fit_weights(task, preds, p.y)
    blend_oof = B.apply_weights(task, preds, weights)
    cross_oof = _empty_like(task, B.take(task, preds[0], np.arange(1)), n)
    blend_scores: list[dict[str, float]] = []
    cross_scores: list[dict[str, float]] = []
    for tr, va in folds:
        blend_scores.append(B.score(task, B.take(task, blend_oof, va), p.y[va]))
        w = B.fit_weights(task, [B.take(task, q, tr) for q in preds], p.y[tr])
        part = B.apply_weights(task, [B.take(task, q, va) for q in preds], w)
        _put(task, cross_oof, va, part)
        cross_scores.append(B.score(task, part, p.y[va]))
    test_pred = None
    if test_sum:
        if task == "count":
            test_pred = B.apply_weights(task, [(test_sum[m] / len(folds), None) for m in names], weights)[0]
        else:
            test_pred = B.apply_weights(task, [test_sum[m] / len(folds) for m in names], weights)
    if len(names) > 1:
        fold_scores["blend"] = blend_scores
        fold_scores["blend_crossfit"] = cross_scores
        oof["blend"] = blend_oof
    else:
        fold_scores["blend"] = fold_scores[names[0]]
        oof["blend"] = oof[names[0]]
    return {
        "names": names,
        "folds": folds,
        "oof": oof,
        "fold_scores": fold_scores,
        "weights": weights,
        "detail": detail,
        "test_pred": test_pred,
        "medic_findings": medic_findings,
        "trimmed": trimmed,
        "heal_events": heal_events,
        "curves": curves,
        "fitted": fitted,
        "studies": studies,
        "selections": selections,
    }


def budget_sample(rows: np.ndarray, y: np.ndarray, task: str, cap: int, seed: int) -> np.ndarray:
    """At most about ``cap`` of ``rows`` (positions into ``y``), sorted: all of them when there are no more,
    else a random sample, by class for classes (each class in its share, and at least 20 rows of a class or
    all it has, so a rare class is not lost: the linear member must know every class)."""
    if len(rows) <= cap:
        return rows
    rng = np.random.default_rng(seed)
    if task not in ("binary", "multiclass"):
        return np.sort(rng.choice(rows, cap, replace=False))
    yr = y[rows]
    parts = []
    for c in np.unique(yr):
        members = rows[yr == c]
        take = max(min(len(members), 20), int(round(cap * len(members) / len(rows))))
        parts.append(rng.choice(members, min(take, len(members)), replace=False))
    return np.sort(np.concatenate(parts))


def _progress_mode(progress: bool | str) -> str:
    if progress in (False, None, "off"):
        return "off"
    if progress in ("bars", "lines"):
        return str(progress)
    return "bars" if sys.stderr.isatty() else "lines"


def training_outliers(X: FeatureFrame, y: np.ndarray, z: float, seed: int) -> np.ndarray:
    """Mask of training rows to keep: |cross-fitted ridge residual| <= z robust standard deviations.

    The residual of each row comes from a model that did not see it (5-fold inside the training rows),
    so a row is dropped only when the other rows cannot explain its target at all.
    """
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    from trainmedic.tabular.preprocess import dense_preprocessor

    A = dense_preprocessor(X).fit_transform(X.X)
    alpha = RidgeCV(alphas=np.logspace(-1, 3, 13)).fit(A, y).alpha_  # efficient leave-one-out choice
    cv = KFold(5, shuffle=True, random_state=seed)
    pred = cross_val_predict(Ridge(alpha=alpha), A, y, cv=cv)
    r = y - pred
    sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
    if not np.isfinite(sigma) or sigma <= 0:
        return np.ones(len(y), dtype=bool)
    return np.abs(r - np.median(r)) <= z * sigma


def _empty_like(task: str, entry: Any, n: int) -> Any:
    if task == "count":
        return np.zeros(n), np.zeros(n)
    arr = np.asarray(entry)
    return np.zeros((n, *arr.shape[1:]))


def _put(task: str, store: Any, idx: np.ndarray, entry: Any) -> None:
    if task == "count":
        store[0][idx] = entry[0]
        if entry[1] is not None:
            store[1][idx] = entry[1]
    else:
        store[idx] = entry


# ----------------------------------------------------------------------------------------------------------
# the whole fit
# ----------------------------------------------------------------------------------------------------------
def fit_table(
    data: Any,
    target: str,
    test: Any = None,
    out: str | os.PathLike[str] | None = None,
    config: FitConfig | None = None,
    save: str | os.PathLike[str] | None = None,
) -> FitResult:
    """Cross-validate the models on ``data`` (a path or DataFrame) and write the outputs into ``out``;
    with ``save``, also the fitted models (``trainmedic predict`` applies them to new data)."""
    cfg = config or FitConfig()
    t0 = time.perf_counter()
    p = prepare(data, target, test, cfg)
    if out is not None:
        check_writable_dir(out, "--out")
    if save is not None:
        from trainmedic.tabular.saved import check_save_dir

        check_save_dir(save)
    findings = check_frame(p.df, target=target, test=p.test_df, report=p.report, test_report=p.test_report,
                          info=p.info)
    end = t0 + cfg.time_budget if cfg.time_budget else None
    res = cross_validate(p, cfg, None if end is None else end - BUDGET_RESERVE * cfg.time_budget)
    importance = None
    if cfg.importance:
        from trainmedic.tabular.importance import importance_document

        importance = importance_document(p.info.kind, p.features, p.y, res, cfg.seed, deadline=end)
    elapsed = time.perf_counter() - t0
    cv = _cv_document(p, cfg, res, elapsed)
    if importance is not None:
        cv["importance"] = importance
    findings += _fit_findings(p, res, cv)
    result = FitResult(cv=cv, findings=findings, oof=res["oof"], y=p.y, info=p.info)
    ids = p.df[p.id_col].iloc[p.rows] if p.id_col is not None else pd.Series(p.rows)
    result.plots = {"y": p.y, "oof": res["oof"], "ids": [_plain(v) for v in ids]}
    if res["test_pred"] is not None:
        result.submission = _submission(p, res["test_pred"])
    if save is not None:
        from trainmedic.tabular.saved import save_fit

        result.files["model"] = save_fit(save, p, res)["model.json"]
    if out is not None:
        result.out_dir = Path(out)
        result.files.update(write_outputs(Path(out), result))
    return result


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _summary(scores: list[dict[str, float]]) -> dict[str, Any]:
    keys = list(scores[0]) if scores else []
    primary = keys[0] if keys else None
    vals = [s[primary] for s in scores] if primary else []
    d: dict[str, Any] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "folds": [float(v) for v in vals]}
    for k in keys[1:]:
        kv = [s[k] for s in scores]
        d[k] = {"mean": float(np.mean(kv)), "std": float(np.std(kv)), "folds": [float(v) for v in kv]}
    return d


def _cv_document(p: Prepared, cfg: FitConfig, res: dict[str, Any], elapsed: float) -> dict[str, Any]:
    task = p.info.kind
    models = {name: _summary(scores) for name, scores in res["fold_scores"].items()}
    for name, det in res["detail"].items():
        models[name].update({k: v for k, v in det.items()})
    if res.get("studies"):
        from trainmedic.tabular.search import summary as search_summary

        for name, studies in res["studies"].items():
            models[name]["search"] = search_summary(studies)
    selection = None
    if res.get("selections"):
        from trainmedic.tabular.select import summary as selection_summary

        selection = selection_summary(res["selections"])
    if res["curves"]:  # the first network of each fold: its per-epoch losses and what Medic did
        models["mlp"]["curves"] = res["curves"]
        models["mlp"]["heal_events"] = res["heal_events"]
    blend = models["blend"]
    singles = {m: models[m]["mean"] for m in res["names"]}
    if "blend_crossfit" in models:
        models["blend_crossfit"]["note"] = "each fold scored with weights chosen on the other folds only"
    best_single = min(singles, key=singles.get)
    pooled = B.score(task, res["oof"]["blend"], p.y)
    doc: dict[str, Any] = {
        "metric": p.info.metric,
        "folds": blend["folds"],
        "mean": blend["mean"],
        "std": blend["std"],
        "models": models,
        "best_model": "blend" if blend["mean"] <= singles[best_single] else best_single,
        "blend_weights": B.weights_json(res["names"], res["weights"]),
        "pooled_oof": pooled,
        "task": task,
        "task_reason": p.info.reason,
        "target": p.target,
        "classes": p.info.classes or None,
        "rows": int(len(p.y)),
        "rows_dropped_bad_target": int(len(p.df) - len(p.y)),
        "features": {"numeric": len(p.features.numeric), "categorical": len(p.features.categorical)},
        "dropped_columns": p.dropped_cols,
        "text_columns": list(p.features.text),
        "selection": selection,
        "trimmed_training_rows": {
            "rule": f"|cross-fitted ridge residual| > {cfg.trim_z:g} robust sd; linear and MLP training rows only",
            "per_fold": [len(t) for t in res["trimmed"]],
            "rows": res["trimmed"],
        } if res["trimmed"] else None,
        "linear_budget_sample": _linear_sample(res["detail"].get("linear", {}), cfg.linear_budget_rows),
        "n_folds": cfg.folds,
        "seed": cfg.seed,
        "config": jsonable(cfg.to_dict()),
        "time_s": round(elapsed, 2),
        "data": p.report.to_dict(),
    }
    for k, v in blend.items():
        if k not in ("mean", "std", "folds") and isinstance(v, dict):
            doc[k] = v  # secondary metrics of the blend (nll, accuracy)
    if task == "count":  # each metric judged on its own: the mean by deviance, the distribution by NLL
        by_nll = {m: models[m]["nll"]["mean"] for m in res["names"]}
        best_nll = min(by_nll, key=by_nll.get)
        doc["best_model_by_metric"] = {
            "poisson_deviance": doc["best_model"],
            "nll": "blend" if blend["nll"]["mean"] <= by_nll[best_nll] else best_nll,
        }
    return doc


def _linear_sample(lin: dict[str, Any], cap: int) -> dict[str, Any] | None:
    """cv.json's ``linear_budget_sample``: what --time-budget did to the linear member (None: nothing)."""
    used, rows = lin.get("rows_used", []), lin.get("train_rows", [])
    if not any(u < t for u, t in zip(used, rows, strict=False)):
        return None
    return {"rule": f"--time-budget: the linear member is fitted on at most {cap} of a fold's "
                    "training rows (a sample, by class for classes); the network and LightGBM get the time",
            "rows_used": used, "train_rows": rows}


# Medic codes that, inside fit, are fit's own schedule at work (early stopping with the best weights kept,
# the lr lowered on a plateau, the lr floor ending training): recorded as heal events of the MLP's folds in
# cv.json and drawn on its curves, not reported as problems. Any other Medic finding is a finding, with the
# severity ``trainmedic explain --list`` gives its rule.
SCHEDULE_CODES = ("TM308", "TM309", "TM316")


def _fit_findings(p: Prepared, res: dict[str, Any], cv: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    # Medic's findings from the folds: one per code, the folds counted in evidence
    by_code: dict[str, tuple[Finding, list[int]]] = {}
    for k, f in res["medic_findings"]:
        if f.code in SCHEDULE_CODES:
            continue
        if f.code in by_code:
            by_code[f.code][1].append(k)
        else:
            by_code[f.code] = (f, [k])
    for f, ks in by_code.values():
        ev = dict(f.evidence)
        ev.update({"model": "mlp", "folds": sorted({k + 1 for k in ks}), "count": len(ks)})
        out.append(Finding(f.code, f"MLP (fold {ks[0] + 1}): {f.message}", step=f.step, epoch=f.epoch,
                           evidence=ev, action=f.action))
    return out


def _submission(p: Prepared, pred: np.ndarray) -> pd.DataFrame:
    from trainmedic.tabular.saved import submission_frame

    return submission_frame(p.info.kind, p.info.classes, p.target, p.test_ids, pred)


FIT_FILES = ("cv.json", "findings.json", "report.html", "submission.csv", "oof.json")


def write_outputs(out: Path, result: FitResult) -> dict[str, str]:
    """Write the fit's files into ``out`` all-or-nothing; files of an earlier fit there are replaced or removed."""
    from trainmedic.findings import findings_document
    from trainmedic.tabular.report import plots_document, render_fit_report

    files = {
        "cv.json": json.dumps(jsonable(result.cv), indent=2, allow_nan=False) + "\n",
        "findings.json": json.dumps(findings_document(result.findings), indent=2, allow_nan=False) + "\n",
        "report.html": render_fit_report(result.cv, result.findings, result.plots),
    }
    oof = plots_document(result.plots)
    if oof is not None:  # the per-row predictions, so that `trainmedic report DIR` can draw this page again
        files["oof.json"] = json.dumps(jsonable(oof), allow_nan=False) + "\n"
    if result.submission is not None:
        files["submission.csv"] = result.submission.to_csv(index=False)
    written = commit_files(out, files, FIT_FILES, "--out")
    keys = {"cv.json": "cv", "findings.json": "findings", "report.html": "report", "submission.csv": "submission",
            "oof.json": "oof"}
    return {keys[name]: path for name, path in written.items()}


# ----------------------------------------------------------------------------------------------------------
# the demo
# ----------------------------------------------------------------------------------------------------------
def demo_config() -> FitConfig:
    """A fast setting for the demo: fewer epochs and boosting rounds, same models."""
    return FitConfig(
        mlp=MLPConfig(max_epochs=80, patience=12, bags=1),
        gbm=GBMConfig(learning_rate=0.05, max_rounds=1500, early_stopping=100),
        progress=sys.stderr.isatty(),
    )


def run_demo_fit(out_dir: str | os.PathLike[str], config: FitConfig | None = None) -> dict[str, Any]:
    """The house-price fit on the shipped data (fast setting); returns the cv summary written to out_dir."""
    from trainmedic import datasets

    res = fit_table(datasets.house_prices_train(), "SalePrice", test=datasets.house_prices_test(),
                    out=out_dir, config=config or demo_config())
    return res.cv


__all__ = ["FitConfig", "FitResult", "fit_table", "prepare", "run_demo_fit"]


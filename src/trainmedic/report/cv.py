"""The cross-validation part of a report (``cv.json`` of ``trainmedic fit``): model comparison and folds."""

from __future__ import annotations

import json
import math
from typing import Any

from trainmedic.report.events import num
from trainmedic.report.figures import Plot, figure, short, text


def fmt(v: Any) -> str:
    """A number as the tables show it (4 significant digits, NaN/Inf spelled out); text as it is."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    x = num(v)
    if isinstance(v, str) and math.isnan(x) and v.lower() != "nan":
        return v
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return f"{x:.4g}"


def _lower_is_better(cv: dict[str, Any]) -> bool:
    if "greater_is_better" in cv:
        return not bool(cv["greater_is_better"])
    metric = str(cv.get("metric", "")).lower()
    return not any(k in metric for k in ("acc", "auc", "r2", "f1", "precision", "recall"))


def fig_models(cv: dict[str, Any]) -> Plot | None:
    models = _models(cv)
    if not models:
        return None
    lower = _lower_is_better(cv)
    order = sorted(models, key=lambda m: models[m]["mean"], reverse=not lower)
    width_names = max((len(short(m, 40)) for m in order), default=8)
    fig = figure(9, max(1.8, 0.9 + 0.42 * len(order)), left=min(0.4, 0.03 + 0.009 * width_names), right=0.97)
    ax = fig.add_subplot(1, 1, 1)
    best = cv.get("best_model") if cv.get("best_model") in models else order[0]
    ypos = list(range(len(order)))[::-1]
    means = [models[m]["mean"] for m in order]
    stds = [models[m]["std"] for m in order]
    colors = ["#2ca02c" if m == best else "#9ecae1" for m in order]
    ax.barh(ypos, means, xerr=stds, color=colors, edgecolor="#555555", capsize=3, zorder=2)
    for y, m in zip(ypos, order):
        folds = [v for v in models[m]["folds"] if math.isfinite(v)]
        ax.scatter(folds, [y] * len(folds), color="#333333", s=10, zorder=3)
    ax.set_yticks(ypos)
    ax.set_yticklabels([text(short(m, 40)) for m in order])
    allv = [v for m in order for v in models[m]["folds"] + [models[m]["mean"]] if math.isfinite(v)]
    if allv:
        lo, hi = min(allv), max(allv)
        pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
        ax.set_xlim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    ax.set_xlabel(text(f"{cv.get('metric', 'score')} ({'lower' if lower else 'higher'} is better); "
                        "bar: mean over folds, whisker: std, dots: folds"))
    ax.grid(axis="y", visible=False)
    return Plot.of("models", "Model comparison", fig)


def _models(cv: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    models = cv.get("models")
    if isinstance(models, dict):
        for name, m in models.items():
            if not isinstance(m, dict):
                continue
            folds = [num(v) for v in m.get("folds") or [] if not isinstance(v, (dict, list))]
            mean = num(m.get("mean"))
            if not math.isfinite(mean) and folds:
                fin = [v for v in folds if math.isfinite(v)]
                mean = sum(fin) / len(fin) if fin else math.nan
            std = num(m.get("std"))
            if not math.isfinite(std):
                fin = [v for v in folds if math.isfinite(v)]
                mu = sum(fin) / len(fin) if fin else 0.0
                std = math.sqrt(sum((v - mu) ** 2 for v in fin) / len(fin)) if fin else 0.0
            if math.isfinite(mean):
                out[str(name)] = {"mean": mean, "std": std, "folds": folds, "raw": m}
    if not out and isinstance(cv.get("folds"), list):
        folds = [num(v) for v in cv["folds"] if not isinstance(v, (dict, list))]
        fin = [v for v in folds if math.isfinite(v)]
        if fin:
            mean = num(cv.get("mean"))
            out["model"] = {"mean": mean if math.isfinite(mean) else sum(fin) / len(fin),
                            "std": num(cv.get("std")) if math.isfinite(num(cv.get("std"))) else 0.0,
                            "folds": folds, "raw": {}}
    return out


def fit_tables(cv: dict[str, Any]) -> dict[str, Any]:
    models = _models(cv)
    lower = _lower_is_better(cv)
    nfolds = max([len(m["folds"]) for m in models.values()] + [0])
    best = cv.get("best_model")
    if best not in models and models:
        best = (min if lower else max)(models, key=lambda m: models[m]["mean"])
    secondary = []
    for m in models.values():
        for k, v in m["raw"].items():
            if isinstance(v, dict) and "mean" in v and k not in secondary:
                secondary.append(k)
    comparison = []
    for name, m in models.items():
        details = {k: v for k, v in m["raw"].items() if k not in ("mean", "std", "folds") and k not in secondary}
        comparison.append({
            "name": name, "mean": fmt(m["mean"]), "std": fmt(m["std"]), "best": name == best,
            "secondary": [fmt((m["raw"].get(k) or {}).get("mean")) if isinstance(m["raw"].get(k), dict) else ""
                          for k in secondary],
            "details": short(", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in details.items()), 300),
        })
    folds = []
    for i in range(nfolds):
        cells = []
        fold_vals = {n: m["folds"][i] for n, m in models.items() if i < len(m["folds"])}
        fin = {n: v for n, v in fold_vals.items() if math.isfinite(v)}
        fold_best = (min if lower else max)(fin, key=fin.get) if fin else None
        for name in models:
            v = fold_vals.get(name)
            cells.append({"value": fmt(v) if v is not None else "", "best": name == fold_best})
        folds.append({"fold": i + 1, "cells": cells})
    summary = []
    for key, label in (("target", "target"), ("task", "task"), ("metric", "metric"), ("rows", "rows"),
                       ("n_folds", "folds"), ("seed", "seed"), ("time_s", "time (s)")):
        if key in cv and not isinstance(cv[key], (dict, list)):
            summary.append((label, str(cv[key])))
    feats = cv.get("features")
    if isinstance(feats, dict):
        summary.append(("features", ", ".join(f"{v} {k}" for k, v in feats.items())))
    weights = cv.get("blend_weights") if isinstance(cv.get("blend_weights"), dict) else {}
    dropped = cv.get("dropped_columns") if isinstance(cv.get("dropped_columns"), dict) else {}
    return {"models": list(models), "comparison": comparison, "folds": folds, "secondary": secondary,
            "lower": lower, "metric": str(cv.get("metric", "score")), "mean": fmt(cv.get("mean")),
            "std": fmt(cv.get("std")), "best": best, "summary": summary,
            "weights": {str(k): (v if isinstance(v, dict) else {"": v}) for k, v in weights.items()},
            "dropped": {str(k): str(v) for k, v in dropped.items()},
            "task_reason": str(cv.get("task_reason", "") or "")}

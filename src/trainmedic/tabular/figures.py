"""The figures of the ``fit`` report, drawn with matplotlib and inlined as PNG (no file, no network).

Each function returns ``(id, title, caption, png_base64)`` or None when the data for it is missing:

- out-of-fold predicted against actual, and residuals, on the judged scale (log price for house prices);
- per-fold scores of every model and the blend (why the blend wins: it is lower on every fold, or not);
- the MLP's train and validation loss per fold, with Medic's heal events at their epochs;
- feature importance: permutation importance on out-of-fold rows and LightGBM's gain share;
- classification: the confusion matrix and a calibration curve; counts: a rootogram.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

Figure = tuple[str, str, str, str]
COLORS = {"mlp": "#1f77b4", "lightgbm": "#2ca02c", "linear": "#9467bd", "blend": "#d62728",
          "blend_crossfit": "#ff9896"}
EVENT_MARKS = {"lr-change": ("v", "#ff7f0e"), "restore-best": ("*", "#d62728"), "stop": ("X", "#000000"),
               "clip": ("^", "#8c564b"), "skip-step": ("x", "#e377c2"), "rollback": ("s", "#7f7f7f")}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def fig_oof(cv: dict[str, Any], plots: dict[str, Any]) -> Figure | None:
    task = cv["task"]
    if task not in ("regression", "log-regression") or "blend" not in plots.get("oof", {}):
        return None
    y, pred = np.asarray(plots["y"]), np.asarray(plots["oof"]["blend"])
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    a.scatter(y, pred, s=8, alpha=0.5, color=COLORS["blend"])
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    a.plot([lo, hi], [lo, hi], color="#444", lw=1, ls="--", label="perfect")
    scale = "log target" if task == "log-regression" else "target"
    a.set_xlabel(f"actual ({scale})")
    a.set_ylabel(f"blend, out of fold ({scale})")
    a.legend(loc="upper left")
    resid = y - pred
    b.scatter(pred, resid, s=8, alpha=0.5, color=COLORS["blend"])
    b.axhline(0, color="#444", lw=1, ls="--")
    worst = np.argsort(-np.abs(resid))[:5]
    ids = plots.get("ids")
    for i in worst:
        b.annotate(str(ids[i]) if ids is not None else str(i), (pred[i], resid[i]), fontsize=8,
                   xytext=(3, 3), textcoords="offset points")
    b.set_xlabel(f"blend prediction ({scale})")
    b.set_ylabel("actual - predicted")
    fig.tight_layout()
    return ("plot-oof", "Out-of-fold predictions", f"Every row predicted by the models of the fold that did not "
            f"train on it, on the judged scale ({scale}). The five largest errors are labelled with their id.",
            _png(fig))


def fig_folds(cv: dict[str, Any]) -> Figure | None:
    models = cv.get("models", {})
    if not models:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for name, m in models.items():
        folds = m.get("folds") or []
        if not folds:
            continue
        style = dict(lw=2.5, marker="o") if name == "blend" else dict(lw=1.2, marker=".", ls="--" if "cross" in name else "-")
        ax.plot(range(1, len(folds) + 1), folds, label=f"{name} ({m['mean']:.4f})", color=COLORS.get(name), **style)
    ax.set_xticks(range(1, int(cv.get("n_folds", 0)) + 1))
    ax.set_xlabel("fold")
    ax.set_ylabel(f"{cv['metric']} (lower is better)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    fig.tight_layout()
    return ("plot-folds", "Per-fold scores", "Each model's score on each validation fold; the blend is the thick "
            "line. A blend below every model on every fold wins by combining them, not by luck of one fold.",
            _png(fig))


def fig_curves(cv: dict[str, Any]) -> Figure | None:
    mlp = cv.get("models", {}).get("mlp", {})
    curves = mlp.get("curves")
    if not curves:
        return None
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    n = len(curves)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 1.5, 2.6 * rows), squeeze=False, sharey=True)
    events = mlp.get("heal_events") or [[] for _ in curves]
    seen: dict[str, Any] = {}
    for k, (curve, evs) in enumerate(zip(curves, events, strict=False)):
        ax = axes[k // cols][k % cols]
        ep = np.arange(1, len(curve["train"]) + 1)
        ax.plot(ep, curve["train"], color="#1f77b4", lw=1.2, label="train")
        ax.plot(ep, curve["val"], color="#d62728", lw=1.2, label="validation")
        for e in evs:
            i = int(e["epoch"])
            if 1 <= i <= len(curve["val"]):
                marker, color = EVENT_MARKS.get(e["action"], ("o", "#17becf"))
                h = ax.scatter([i], [curve["val"][i - 1]], marker=marker, color=color, s=60, zorder=3,
                               label=f"{e['action']} ({e['code']})")
                seen.setdefault(f"{e['action']} ({e['code']})", h)
        ax.set_title(f"fold {k + 1}", fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        vals = [v for v in curve["train"] + curve["val"] if np.isfinite(v)]
        if vals and min(vals) > 0 and max(vals) / min(vals) > 30:
            ax.set_yscale("log")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles = handles[:2] + list(seen.values())
    labels = labels[:2] + list(seen)
    fig.tight_layout(rect=(0, 0.1 + 0.06 / rows, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9)
    return ("plot-curves", "The MLP in each fold", "Training and inner-validation loss of the first network of "
            "each fold, with what Medic(heal) did (lr lowered on a plateau, early stop, best weights restored, "
            "clipped gradients).", _png(fig))


def fig_importance(cv: dict[str, Any], top: int = 20) -> Figure | None:
    imp = cv.get("importance") or {}
    perm = imp.get("permutation")
    if not perm:
        return None
    names = list(perm)[:top][::-1]
    gain = imp.get("lightgbm_gain")
    plt = _plt()
    ncols = 2 if gain else 1
    fig, axes = plt.subplots(1, ncols, figsize=(10, 0.28 * len(names) + 1.4), squeeze=False)
    ax = axes[0][0]
    ax.barh(names, [perm[n] for n in names], color=COLORS["blend"])
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel(f"{cv['metric']} increase when shuffled")
    ax.set_title("permutation (blend, out of fold)", fontsize=10)
    if gain:
        g_names = list(gain)[:top][::-1]
        axes[0][1].barh(g_names, [gain[n] for n in g_names], color=COLORS["lightgbm"])
        axes[0][1].set_xlabel("share of split gain")
        axes[0][1].set_title("LightGBM gain", fontsize=10)
    fig.tight_layout()
    return ("plot-importance", "Feature importance", "Left: how much worse the blend scores on rows it never saw "
            "when one column is shuffled (what the models rely on). Right: LightGBM's share of split gain.",
            _png(fig))


def fig_classes(cv: dict[str, Any], plots: dict[str, Any]) -> Figure | None:
    if cv["task"] not in ("binary", "multiclass") or "blend" not in plots.get("oof", {}):
        return None
    y, P = np.asarray(plots["y"], dtype=int), np.asarray(plots["oof"]["blend"])
    classes = [str(c) for c in (cv.get("classes") or range(P.shape[1]))]
    C = P.shape[1]
    cm = np.zeros((C, C), dtype=int)
    np.add.at(cm, (y, P.argmax(axis=1)), 1)
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    a.imshow(cm, cmap="Blues")
    for i in range(C):
        for j in range(C):
            a.text(j, i, str(cm[i, j]), ha="center", va="center",
                   color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=9)
    a.set_xticks(range(C), classes, rotation=45 if C > 3 else 0, fontsize=8)
    a.set_yticks(range(C), classes, fontsize=8)
    a.set_xlabel("predicted")
    a.set_ylabel("actual")
    a.set_title("confusion matrix (out of fold)", fontsize=10)
    # calibration: the predicted probability of the predicted class against how often it was right
    conf = P.max(axis=1)
    right = (P.argmax(axis=1) == y).astype(float)
    edges = np.linspace(conf.min(), 1.0, 11)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, 9)
    xs, ys, ns = [], [], []
    for k in range(10):
        m = which == k
        if m.sum() >= 5:
            xs.append(conf[m].mean())
            ys.append(right[m].mean())
            ns.append(int(m.sum()))
    b.plot([0, 1], [0, 1], ls="--", color="#444", lw=1, label="perfectly calibrated")
    b.plot(xs, ys, marker="o", color=COLORS["blend"], label="blend")
    b.set_xlim(max(0.0, conf.min() - 0.05), 1.01)
    b.set_ylim(0, 1.02)
    b.set_xlabel("predicted probability of the predicted class")
    b.set_ylabel("fraction right")
    b.set_title("calibration (out of fold)", fontsize=10)
    b.legend(loc="upper left")
    fig.tight_layout()
    return ("plot-classes", "Confusion matrix and calibration", "Out-of-fold predictions of the blend. "
            "Calibration: rows binned by the predicted probability of the predicted class (bins of 5 rows or more).",
            _png(fig))


def fig_rootogram(cv: dict[str, Any], plots: dict[str, Any]) -> Figure | None:
    if cv["task"] != "count" or "blend" not in plots.get("oof", {}):
        return None
    from trainmedic.tabular.models import fit_nb_alpha, nb_logpmf

    y = np.asarray(plots["y"], dtype=float)
    mean = np.asarray(plots["oof"]["blend"][0], dtype=float)
    alpha = fit_nb_alpha(y, mean)
    top = int(min(np.quantile(y, 0.995), 60))
    ks = np.arange(top + 1)
    observed = np.array([(y == k).sum() for k in ks], dtype=float)
    expected = np.array([np.exp(nb_logpmf(np.full(len(mean), k), mean, alpha)).sum() for k in ks])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    # hanging rootogram: bars of sqrt(observed) hang from the sqrt(expected) curve; a gap from 0 is misfit
    ax.bar(ks, np.sqrt(observed), bottom=np.sqrt(expected) - np.sqrt(observed), color="#aec7e8",
           edgecolor="#1f77b4", label="observed (hanging)")
    ax.plot(ks, np.sqrt(expected), color=COLORS["blend"], marker="o", label=f"expected (NB, alpha {alpha:.3g})")
    ax.axhline(0, color="#444", lw=1)
    ax.set_xlabel("count")
    ax.set_ylabel("sqrt(frequency)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return ("plot-rootogram", "Rootogram", "Observed count frequencies hanging from those expected under a "
            "negative binomial with the blend's out-of-fold means (dispersion fitted on them): a bar ending "
            "above or below zero is a count the model over- or under-predicts.", _png(fig))


def fit_figures(cv: dict[str, Any], plots: dict[str, Any] | None) -> list[Figure]:
    plots = plots or {}
    out = []
    for make in (lambda: fig_oof(cv, plots), lambda: fig_classes(cv, plots), lambda: fig_rootogram(cv, plots),
                 lambda: fig_folds(cv), lambda: fig_curves(cv), lambda: fig_importance(cv)):
        f = make()
        if f is not None:
            out.append(f)
    return out


__all__ = ["fit_figures"]

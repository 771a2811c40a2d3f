# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four (house): variants of the linear member, same folds as fit. Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_r4_lin.py SEED [VARIANT ...]
# Writes /tmp/house/r4lin_SEED.npz (out-of-fold predictions per variant).
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, training_outliers
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular import preprocess as PP
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler, PowerTransformer
from sklearn.linear_model import LassoCV
seed = int(sys.argv[1]); want = sys.argv[2:]
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg); y = p.y; n = len(y)

def yj_pre(ff):
    num = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                    ("log1p", PP.SkewLog1p()), ("yj", PowerTransformer()), ("w", PP.Winsorize(0.01)), ("scale", StandardScaler())])
    return ColumnTransformer([("num", num, ff.numeric), ("cat", PP._onehot(3), ff.categorical)], sparse_threshold=0.0)

def te_cols(Xtr, ytr, Xva, m=10.0):
    """Smoothed target means of each categorical column, 5-fold cross-fitted on the training rows."""
    from sklearn.model_selection import KFold
    g = ytr.mean(); tr_out = np.zeros((len(ytr), len(Xtr.categorical))); va_out = np.zeros((len(Xva.X), len(Xtr.categorical)))
    for j, c in enumerate(Xtr.categorical):
        col = Xtr.X[c].to_numpy()
        def enc(fit_idx, vals):
            import pandas as pd
            s = pd.DataFrame({"c": col[fit_idx], "y": ytr[fit_idx]}).groupby("c")["y"].agg(["sum", "count"])
            mp = ((s["sum"] + m * g) / (s["count"] + m)).to_dict()
            return np.array([mp.get(v, g) for v in vals])
        for a, b in KFold(5, shuffle=True, random_state=seed).split(col):
            tr_out[b, j] = enc(a, col[b])
        va_out[:, j] = enc(np.arange(len(col)), Xva.X[c].to_numpy())
    return tr_out, va_out

def inter(A, B, ytr, k=10):
    """Pairwise products of the k standardized columns most correlated with the target (training rows)."""
    c = np.nan_to_num(np.abs([np.corrcoef(A[:, j], ytr)[0, 1] if A[:, j].std() > 0 else 0 for j in range(A.shape[1])]))
    top = np.argsort(-c)[:k]
    ia, ib = np.triu_indices(k, 1)
    PA = A[:, top[ia]] * A[:, top[ib]]; PB = B[:, top[ia]] * B[:, top[ib]]
    mu, sd = PA.mean(0), PA.std(0) + 1e-9
    return np.hstack([A, (PA - mu) / sd]), np.hstack([B, (PB - mu) / sd])

def spl(Xtr, Xva):
    """Cubic splines (5 quantile knots, constant beyond the training range) of the many-valued numeric columns."""
    from sklearn.preprocessing import SplineTransformer
    many = [c for c in Xtr.numeric if Xtr.X[c].nunique() > 6]
    pipe = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("log1p", PP.SkewLog1p()),
                     ("w", PP.Winsorize(0.01)), ("s", SplineTransformer(n_knots=5, degree=3, knots="quantile", extrapolation="constant")),
                     ("sc", StandardScaler())])
    return pipe.fit_transform(Xtr.X[many]), pipe.transform(Xva.X[many])

def hinge(A, B, nnum, q=(0.2, 0.4, 0.6, 0.8)):
    """Linear-spline terms max(0, x - knot) at training quantiles of the many-valued prepared numeric columns."""
    cols = [j for j in range(nnum) if np.unique(A[:, j]).size > 6]
    HA, HB = [], []
    for j in cols:
        for kn in np.unique(np.quantile(A[:, j], q)):
            ha = np.maximum(A[:, j] - kn, 0); hb = np.maximum(B[:, j] - kn, 0)
            mu, sd = ha.mean(), ha.std()
            if sd > 0: HA.append((ha - mu) / sd); HB.append((hb - mu) / sd)
    return np.hstack([A, np.column_stack(HA)]), np.hstack([B, np.column_stack(HB)])

def lasso(A, yt):
    return LassoCV(alphas=np.logspace(-4, -1, 16), cv=5, max_iter=20000, tol=1e-4, random_state=seed).fit(A, yt)

variants = want or ["base", "trim0", "trim3", "trim6", "yj", "te", "inter10", "inter15", "te_inter10"]
# a variant is tokens joined by "_": trimZ (z of the training-row trim; 4 otherwise), yj (Yeo-Johnson after
# log1p), te (cross-fitted target means of the categorical columns added), interK (products of the top K)
def toks(v): return v.split("_")
def zof(v): return next((float(t[4:]) for t in toks(v) if t.startswith("trim")), 4.0)
oof = {v: np.zeros(n) for v in variants}; tm = {v: 0.0 for v in variants}
for k, (tr, va) in enumerate(folds):
    keeps = {}
    for v in variants:
        t = time.perf_counter()
        z = zof(v)
        if z not in keeps:
            keeps[z] = training_outliers(subset_frame(p.features, tr), y[tr], z, seed + k) if z else np.ones(len(tr), bool)
        trd = tr[keeps[z]]
        Xtr = subset_frame(p.features, trd); Xva = subset_frame(p.features, va)
        ym, ys = y[trd].mean(), y[trd].std(); yt = (y[trd] - ym) / ys
        pre = yj_pre(Xtr) if "yj" in toks(v) else PP.dense_preprocessor(Xtr)
        A = pre.fit_transform(Xtr.X); B = pre.transform(Xva.X)
        A0, B0 = A, B
        ik = [int(t[5:]) for t in toks(v) if t.startswith("inter")]
        if ik:
            A, B = inter(A, B, yt, ik[0])
        if "hinge" in toks(v):
            HA, HB = hinge(A0, B0, len(Xtr.numeric)); A = np.hstack([A, HA[:, A0.shape[1]:]]); B = np.hstack([B, HB[:, B0.shape[1]:]])
        if "spl" in toks(v):
            SA, SB = spl(Xtr, Xva); A = np.hstack([A, SA]); B = np.hstack([B, SB])
        if "te" in toks(v):
            TA, TB = te_cols(Xtr, yt, Xva)
            mu, sd = TA.mean(0), TA.std(0) + 1e-9
            A = np.hstack([A, (TA - mu) / sd]); B = np.hstack([B, (TB - mu) / sd])
        est = lasso(A, yt)
        oof[v][va] = est.predict(B) * ys + ym
        tm[v] += time.perf_counter() - t
for v, o in oof.items():
    print(seed, v, round(float(np.mean([np.sqrt(np.mean((o[va] - y[va]) ** 2)) for _, va in folds])), 5), f"{tm[v]:.0f}s", flush=True)
old = {}
try:
    d = np.load(f"/tmp/house/r4lin_{seed}.npz"); old = {k: d[k] for k in d.files}
except FileNotFoundError:
    pass
old.update({"lin_" + v: o for v, o in oof.items()})
np.savez(f"/tmp/house/r4lin_{seed}.npz", **old)

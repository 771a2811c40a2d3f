# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round seven (house): extrapolation-aware blending, offline, on fit's out-of-fold predictions.
#   PYTHONPATH=src python benchmarks/house_experiments/r7_extrap.py SEED [BASE_TAG] [TARGET]
# TARGET: "tree" (default: move toward LightGBM) or "nomlp" (move toward the blend without the network,
# its other weights renormalized: the network extrapolates worst on the out-of-range rows).
# Reads /tmp/house6/BASE_TAG_SEED.npz (r6_var.py SEED BASE_TAG models=mlp,lightgbm,linear: mlp, lightgbm, linear, y).
# For every validation row, an outlyingness score w.r.t. its fold's training rows (computed on fit's prepared
# numeric columns); the blend is moved toward the LightGBM member by a(s) = min(1, lam * s):
#   pred = blend + a(s) * (lightgbm - blend).
# lam is chosen on a grid by the other folds' out-of-fold rows only (cross-fitted); the blend weights are
# either fit's (all out-of-fold rows, as fit reports) or cross-fitted too.
import sys, numpy as np, pandas as pd
from sklearn.model_selection import KFold
from trainmedic import datasets
from trainmedic.tabular import blend as B
from trainmedic.tabular.fit import FitConfig, prepare
from trainmedic.tabular.preprocess import SkewLog1p

seed = int(sys.argv[1]); base = sys.argv[2] if len(sys.argv) > 2 else "base"
target = sys.argv[3] if len(sys.argv) > 3 else "tree"
d = np.load(f"/tmp/house6/{base}_{seed}.npz"); y = d["y"]
P = np.column_stack([d["mlp"], d["lightgbm"], d["linear"]]); TREE = 1
folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
two = np.array([1298, 523])
p = prepare(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed))
assert np.allclose(p.y, y)
Xn = p.features.X[p.features.numeric].to_numpy(dtype="float64")


def scores(tr, va, q=0.01):
    """Outlyingness of rows va w.r.t. rows tr: several candidate scores."""
    A, V = Xn[tr], Xn[va]
    lo, hi = np.nanquantile(A, q, axis=0), np.nanquantile(A, 1 - q, axis=0)
    med = np.nanmedian(A, axis=0)
    Vf = np.where(np.isnan(V), med, V)
    out = {}
    out["count"] = ((Vf < lo) | (Vf > hi)).sum(1).astype(float)
    out["count_hi"] = (Vf > hi).sum(1).astype(float)
    # excess beyond the clip range, in units of the training spread, after fit's log1p of skewed columns
    Af = np.where(np.isnan(A), med, A)
    sk = SkewLog1p().fit(Af)
    At, Vt = sk.transform(Af), sk.transform(Vf)
    lo_t, hi_t = np.quantile(At, q, axis=0), np.quantile(At, 1 - q, axis=0)
    sd = At.std(0); sd[sd == 0] = 1
    ex = (np.maximum(Vt - hi_t, 0) + np.maximum(lo_t - Vt, 0)) / sd
    out["excess"] = ex.sum(1)
    out["excess_max"] = ex.max(1)
    # Mahalanobis distance on the standardized transformed columns (ridge-regularized covariance)
    mu = At.mean(0); Z = (At - mu) / sd; Zv = (Vt - mu) / sd
    C = np.cov(Z, rowvar=False) + 0.1 * np.eye(Z.shape[1])
    Ci = np.linalg.inv(C)
    m_tr = np.sqrt(np.einsum("ij,jk,ik->i", Z, Ci, Z)); m_va = np.sqrt(np.einsum("ij,jk,ik->i", Zv, Ci, Zv))
    # as a tail quantile of the training rows' own distances: 0 inside the 99th percentile
    out["maha"] = np.maximum(m_va / np.quantile(m_tr, 0.99) - 1, 0)
    return out


S = {}
for tr, va in folds:
    for k, v in scores(tr, va).items():
        S.setdefault(k, np.zeros(len(y)))[va] = v


def mf(pred, rows=None):
    r = []
    for _, va in folds:
        v = va if rows is None else np.setdiff1d(va, rows)
        r.append(B.rmse(pred[v], y[v]))
    return float(np.mean(r))


def weights(idx):
    return B.fit_weights("regression", [P[idx, j] for j in range(3)], y[idx])["point"]


def shifted(b, s, lam, w=None):
    a = np.minimum(1.0, lam * s)
    if target == "tree":
        t = P[:, TREE]
    else:  # the same blend without the network
        w = w_all if w is None else w
        t = (P[:, 1:] @ w[1:]) / max(w[1:].sum(), 1e-9) if w[1:].sum() > 0 else P[:, 0]
    return b + a * (t - b)


LAMS = np.concatenate([[0.0], np.geomspace(1e-3, 10, 41)])
w_all = weights(np.arange(len(y)))
b_all = P @ w_all
print(f"seed {seed} target {target}: blend {mf(b_all):.5f} without-two {mf(b_all, two):.5f} w={np.round(w_all, 3)}")
print("  scores of Ids 1299/524:", {k: np.round(v[two], 2).tolist() for k, v in S.items()})
for k, s in S.items():
    print(f"  {k}: rows with s>0: {(s > 0).sum()}, quantiles 50/90/99/max {np.round(np.quantile(s, [.5, .9, .99, 1]), 2)}")
for k, s in S.items():
    # (1) fit's weights (all OOF rows), lam cross-fitted; (2) weights and lam cross-fitted
    out1 = np.zeros(len(y)); out2 = np.zeros(len(y)); cross_b = np.zeros(len(y)); lams = []
    for tr, va in folds:
        w_tr = weights(tr); b_tr = P @ w_tr
        l1 = LAMS[np.argmin([np.mean((shifted(b_all, s, l)[tr] - y[tr]) ** 2) for l in LAMS])]
        l2 = LAMS[np.argmin([np.mean((shifted(b_tr, s, l, w_tr)[tr] - y[tr]) ** 2) for l in LAMS])]
        out1[va] = shifted(b_all, s, l1)[va]; out2[va] = shifted(b_tr, s, l2, w_tr)[va]; cross_b[va] = b_tr[va]
        lams.append((round(float(l1), 4), round(float(l2), 4)))
    # in-sample best lam (diagnostic only: chosen on the rows it is scored on)
    lbest = LAMS[np.argmin([np.mean((shifted(b_all, s, l) - y) ** 2) for l in LAMS])]
    curve = {round(float(l), 3): round(mf(shifted(b_all, s, l)), 5) for l in LAMS[::5]}
    print(f"  {k:10s} lam-crossfit {mf(out1):.5f} (w/o two {mf(out1, two):.5f}) | all-crossfit {mf(out2):.5f} "
          f"(plain crossfit {mf(cross_b):.5f}) | lam per fold {lams} | in-sample best lam {lbest:.4g}: {mf(shifted(b_all, s, lbest)):.5f}")
    print(f"     curve {curve}")

# Diagnostic: per outlyingness bucket, excluding Ids 1299 / 524, the mean squared error of the blend and of
# each member (does the tree beat the blend on out-of-range rows other than the two partial sales?)
print("  buckets (rows other than the two): n, MSE blend / mlp / lightgbm / linear")
other = np.setdiff1d(np.arange(len(y)), two)
for k, s in S.items():
    edges = np.unique(np.quantile(s[other][s[other] > 0], [0, .5, .9, 1])) if (s[other] > 0).any() else []
    rows = [("s=0", other[s[other] == 0])]
    for a, b_ in zip(edges[:-1], edges[1:]):
        rows.append((f"({a:.2f},{b_:.2f}]", other[(s[other] > a - 1e-12 if a == edges[0] else s[other] > a) & (s[other] <= b_)]))
    txt = []
    for lab, r in rows:
        e = lambda q: np.mean((q[r] - y[r]) ** 2)
        txt.append(f"{lab} n={len(r)}: {e(b_all):.4f}/{e(P[:, 0]):.4f}/{e(P[:, 1]):.4f}/{e(P[:, 2]):.4f}")
    print(f"  {k:10s} " + " | ".join(txt))

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four (house): blends / stacks of out-of-fold predictions, the score aggregation, the two rows.
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/r4_blend.py SEED [MEMBER ...]
# Reads /tmp/fitsearch/oof_SEED.npz (exp_base.py) and /tmp/house/*_SEED.npz (the round-four experiments).
import sys, glob, numpy as np
from scipy.optimize import nnls
from sklearn.model_selection import KFold
from trainmedic.tabular import blend as B
seed = int(sys.argv[1]); extra = sys.argv[2:]
P = {}
d = np.load(f"/tmp/fitsearch/oof_{seed}.npz"); P.update({k: d[k] for k in d.files})
for f in glob.glob(f"/tmp/house/*_{seed}.npz"):
    d = np.load(f); P.update({k: d[k] for k in d.files})
y = P.pop("y"); P.pop("blend", None); P.pop("blend_crossfit", None)
folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
two = np.array([1298, 523])
def mean_fold(pred): return np.mean([B.rmse(pred[va], y[va]) for _, va in folds])
def pooled(pred): return B.rmse(pred, y)
def without_two(pred): return np.mean([B.rmse(pred[np.setdiff1d(va, two)], y[np.setdiff1d(va, two)]) for _, va in folds])
def convex(M, t): return M @ B.convex_weights(lambda w: float(np.mean((M @ w - t) ** 2)), M.shape[1])
def stack_nnls(Mtr, ytr, Mva):
    """Non-negative weights (not summing to one) plus an intercept: least squares on centred columns."""
    mu, ym = Mtr.mean(0), ytr.mean()
    w, _ = nnls(Mtr - mu, ytr - ym)
    return (Mva - mu) @ w + ym, w
def report(names):
    M = np.column_stack([P[n] for n in names])
    w = B.convex_weights(lambda w: float(np.mean((M @ w - y) ** 2)), M.shape[1]); cv = M @ w
    st, ws = stack_nnls(M, y, M)
    cross_c = np.zeros(len(y)); cross_s = np.zeros(len(y))
    for tr, va in folds:
        ww = B.convex_weights(lambda w: float(np.mean((M[tr] @ w - y[tr]) ** 2)), M.shape[1]); cross_c[va] = M[va] @ ww
        cross_s[va] = stack_nnls(M[tr], y[tr], M[va])[0]
    print(seed, "+".join(names))
    print("   convex (fit's blend): mean-fold %.5f pooled %.5f without-1299/524 %.5f crossfit %.5f  w=%s" % (
        mean_fold(cv), pooled(cv), without_two(cv), mean_fold(cross_c), np.round(w, 3)))
    print("   nnls+intercept stack: mean-fold %.5f pooled %.5f without-1299/524 %.5f crossfit %.5f  w=%s sum=%.3f" % (
        mean_fold(st), pooled(st), without_two(st), mean_fold(cross_s), np.round(ws, 3), ws.sum()))
    print("   folds convex", [round(B.rmse(cv[va], y[va]), 4) for _, va in folds])
base = ["mlp", "lightgbm", "linear"]
for n in base: print(seed, n, "mean-fold %.5f pooled %.5f without-two %.5f" % (mean_fold(P[n]), pooled(P[n]), without_two(P[n])))
report(base)
for e in extra:
    if e in P: print(seed, e, "alone %.5f" % mean_fold(P[e]))
if extra:
    report(base + extra)
    report([m for m in base if m != "linear"] + extra)

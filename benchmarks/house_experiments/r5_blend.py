# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round five (house): fit's members' out-of-fold predictions blended with CatBoost's (fit's convex blend).
#   PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/house_experiments/r5_blend.py SEED CB_TAG [CB_TAG ...]
# Reads /tmp/house5/fit_SEED.npz (r5_fit.py: fit's own members on this commit) and /tmp/house5/cb_TAG_SEED.npz.
import sys, numpy as np
from sklearn.model_selection import KFold
from trainmedic.tabular import blend as B
seed, tags = int(sys.argv[1]), sys.argv[2:]
d = np.load(f"/tmp/house5/fit_{seed}.npz"); P = {k: d[k] for k in d.files}
for t in tags:
    e = np.load(f"/tmp/house5/cb_{t}_{seed}.npz"); P.update({k: e[k] for k in e.files})
y = P.pop("y")
folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
two = np.array([1298, 523])
def mean_fold(pred): return np.mean([B.rmse(pred[va], y[va]) for _, va in folds])
def without_two(pred): return np.mean([B.rmse(pred[np.setdiff1d(va, two)], y[np.setdiff1d(va, two)]) for _, va in folds])
def report(names):
    M = np.column_stack([P[n] for n in names])
    w = B.convex_weights(lambda w: float(np.mean((M @ w - y) ** 2)), M.shape[1]); cv = M @ w
    cross = np.zeros(len(y))
    for tr, va in folds:
        ww = B.convex_weights(lambda w: float(np.mean((M[tr] @ w - y[tr]) ** 2)), M.shape[1]); cross[va] = M[va] @ ww
    print(seed, "+".join(names), "blend %.5f crossfit %.5f without-1299/524 %.5f w=%s folds=%s" % (
        mean_fold(cv), mean_fold(cross), without_two(cv), np.round(w, 3), [round(B.rmse(cv[va], y[va]), 4) for _, va in folds]))
base = ["mlp", "lightgbm", "linear"]
for n in base + [f"cb_{t}" for t in tags]:
    print(seed, n, "alone %.5f without-two %.5f" % (mean_fold(P[n]), without_two(P[n])), [round(B.rmse(P[n][va], y[va]), 4) for _, va in folds])
report(base)
for t in tags:
    report(base + [f"cb_{t}"])
    report(["mlp", "linear", f"cb_{t}"])
if len(tags) > 1:
    report(base + [f"cb_{t}" for t in tags])

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round six (house): fit's convex blend of the network and LightGBM of BASE_TAG with each linear variant.
#   PYTHONPATH=src python benchmarks/house_experiments/r6_blend.py SEED BASE_TAG LINEAR_TAG [...]
# python bl.py SEED base_tag linear_tag...: blend mlp+lightgbm of base with each linear variant
import sys, numpy as np
from sklearn.model_selection import KFold
from trainmedic.tabular import blend as B
seed, base, tags = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
d = np.load(f"/tmp/house6/{base}_{seed}.npz"); y = d["y"]
folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
two = np.array([1298, 523])
def mf(p): return np.mean([B.rmse(p[va], y[va]) for _, va in folds])
def w2(p): return np.mean([B.rmse(p[np.setdiff1d(va, two)], y[np.setdiff1d(va, two)]) for _, va in folds])
for t in tags:
    lin = np.load(f"/tmp/house6/{t}_{seed}.npz")["linear"]
    Mx = np.column_stack([d["mlp"], d["lightgbm"], lin])
    w = B.convex_weights(lambda w: float(np.mean((Mx @ w - y) ** 2)), 3); cv = Mx @ w
    print(seed, t, "linear %.5f blend %.5f without-two %.5f w=%s" % (mf(lin), mf(cv), w2(cv), np.round(w, 3)))

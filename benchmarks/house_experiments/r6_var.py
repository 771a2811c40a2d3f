# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round six (house): fit's members with a variant of the linear member; out-of-fold predictions for r6_blend.py.
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 python benchmarks/house_experiments/r6_var.py SEED TAG [knots=K] [l1=R] [inter=N] [models=a,b]
# Writes /tmp/house6/TAG_SEED.npz (mkdir it first).
# linear-member variants on fit's folds: python var.py SEED TAG [knots=K] [l1=R] [models=a,b]
import sys, time, functools, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
from trainmedic.tabular import models as M
from trainmedic.tabular.splines import SplineBasis
seed, tag = int(sys.argv[1]), sys.argv[2]
opts = dict(a.split("=") for a in sys.argv[3:])
if "knots" in opts:
    M.SplineBasis = functools.partial(SplineBasis, n_knots=int(opts["knots"]))
if "degree" in opts:
    M.SplineBasis = functools.partial(M.SplineBasis, degree=int(opts["degree"]))
extra = {}
if "l1" in opts: extra["l1_ratio"] = float(opts["l1"])
if "inter" in opts: extra["interactions"] = int(opts["inter"])
if extra:
    old = M.LinearModel.__init__
    def init(self, *a, params=None, **k):
        old(self, *a, params={**(params or {}), **extra}, **k)
    M.LinearModel.__init__ = init
models = tuple(opts.get("models", "linear").split(","))
t = time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, models=models, progress=False, importance=False))
print(seed, tag, {k: round(v["mean"], 5) for k, v in res.cv["models"].items()}, round(time.perf_counter() - t, 1), flush=True)
np.savez(f"/tmp/house6/{tag}_{seed}.npz", y=res.y, **{k: v for k, v in res.oof.items() if k != "blend"})

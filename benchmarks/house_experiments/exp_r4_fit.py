# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four (house): fit as shipped on this branch, its out-of-fold predictions saved. Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_r4_fit.py SEED TAG
# Writes /tmp/house/fit_TAG_SEED.npz (members renamed TAG_member, so r4_blend.py can combine them).
import sys, time, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
seed, tag = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, progress=False, importance=False))
print(seed, tag, {k: round(v["mean"], 5) for k, v in res.cv["models"].items()}, res.cv["blend_weights"], round(time.perf_counter() - t, 1), flush=True)
np.savez(f"/tmp/house/fit_{tag}_{seed}.npz", **{f"{tag}_{k}": v for k, v in res.oof.items()})

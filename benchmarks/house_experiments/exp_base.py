# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_base.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, time, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
seed = int(sys.argv[1])
t=time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, progress=False, importance=False))
print(seed, {k: round(v["mean"],5) for k,v in res.cv["models"].items()}, res.cv["blend_weights"], round(time.perf_counter()-t,1), flush=True)
np.savez(f"/tmp/fitsearch/oof_{seed}.npz", y=res.y, **{k: v for k,v in res.oof.items()})

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round five (house): fit's own members (default fit on this commit), out-of-fold predictions for r5_blend.py.
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/r5_fit.py SEED [MODEL ...]
import sys, time, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, MODEL_NAMES, fit_table
seed = int(sys.argv[1]); models = tuple(sys.argv[2:]) or MODEL_NAMES
t = time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, models=models, progress=False, importance=False))
print(seed, {k: round(v["mean"], 5) for k, v in res.cv["models"].items()}, res.cv["blend_weights"],
      round(time.perf_counter() - t, 1), flush=True)
np.savez(f"/tmp/house5/fit_{seed}.npz", y=res.y, **{k: v for k, v in res.oof.items() if k != "blend"})

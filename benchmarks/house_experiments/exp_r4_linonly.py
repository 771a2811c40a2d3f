# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four (house): fit's linear model alone (fit's folds, trimming and seeds; the network and LightGBM
# do not depend on it), out-of-fold predictions saved for r4_blend.py. Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_r4_linonly.py SEED TAG
import sys, time, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
seed, tag = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, models=("linear",), progress=False, importance=False))
print(seed, tag, "linear", round(res.cv["models"]["linear"]["mean"], 5), round(time.perf_counter() - t, 1), flush=True)
np.savez(f"/tmp/house/lin_{tag}_{seed}.npz", **{f"{tag}_linear": res.oof["linear"]})

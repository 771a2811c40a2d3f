"""fit --search 8 without a time budget on house prices, LightGBM and the linear model only (the network's
study costs more CPU than the shared machine had left): what each fold's study chose, inner and outer scores.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/search_nobudget.py SEED OUT.json
"""
import json
import sys
import time

from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table

seed, out = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
cfg = FitConfig(seed=seed, search=8, models=("lightgbm", "linear"), importance=False, progress="lines")
res = fit_table(datasets.house_prices_train(), "SalePrice", config=cfg)
doc = {"seed": seed, "time_s": round(time.perf_counter() - t0, 1),
       "models": {n: {"mean": m["mean"], "folds": m["folds"], "search": m.get("search")} for n, m in res.cv["models"].items()},
       "blend_weights": res.cv["blend_weights"]}
json.dump(doc, open(out, "w"), indent=2)
for n, m in doc["models"].items():
    s = m["search"]
    print(n, round(m["mean"], 5), "" if s is None else f"default {s['default_outer_mean']} changed {s['folds_changed']}")

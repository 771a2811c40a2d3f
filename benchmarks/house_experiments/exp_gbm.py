# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_gbm.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
from dataclasses import replace
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, _inner
from trainmedic.tabular.models import subset_frame, LightGBMModel, GBMConfig
seed = int(sys.argv[1])
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg); y = p.y; n=len(y)
variants = {"huber": GBMConfig(extra={"objective": "huber", "alpha": 0.3}), "leaves7": GBMConfig(num_leaves=7, min_child_samples=10),
            "col03": GBMConfig(colsample_bytree=0.3), "bags3": GBMConfig(bags=3)}
oof={}
for vn, g in variants.items():
    t=time.perf_counter(); o=np.zeros(n)
    for k,(tr,va) in enumerate(folds):
        Xtr, ytr = subset_frame(p.features, tr), y[tr]
        m = LightGBMModel("log-regression", 0, g, seed=cfg.seed*7919+k).fit(Xtr, ytr, _inner(ytr, "log-regression", 0.15, seed+k))
        o[va] = m.predict(subset_frame(p.features, va))
    oof["lgb_"+vn]=o
    print(vn, round(float(np.mean([np.sqrt(np.mean((o[va]-y[va])**2)) for _,va in folds])),5), round(time.perf_counter()-t,1), flush=True)
    np.savez(f"/tmp/fitsearch/gbm_{seed}.npz", **oof)

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round five (house): CatBoost on fit's prepared columns and fit's folds, out-of-fold predictions saved
# for r5_blend.py. Early stopping on an inner split of the fold's TRAINING rows only (fit's _inner split:
# same fraction and seed as fit's other members); the validation fold is only predicted. One thread.
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_r5_catboost.py SEED TAG [k=v ...]
# k=v: depth, lr, iters, l2, trim (1 = fit's training-row trim, as the dense members get), rsm,
#      mode = es (early stopping on the inner split, default) | refit (es, then refit on all the fold's training
#      rows with the chosen trees scaled by 1/0.85) | fixed (iters trees, no stopping; lr=auto: CatBoost's own)
#      | cv (trees chosen on the mean curve of a 3-fold CV of the fold's training rows, then refit x 3/2: LightGBM's way)
#      (refit and cv were written but not run in round five: no CPU left for them on the shared machine)
import sys, time, numpy as np, pandas as pd
from catboost import CatBoostRegressor, Pool
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, _inner, training_outliers
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular import blend as B
seed, tag = int(sys.argv[1]), sys.argv[2]
kv = dict(a.split("=") for a in sys.argv[3:])
depth = int(kv.get("depth", 6)); lr = None if kv.get("lr") == "auto" else float(kv.get("lr", 0.04))
mode = kv.get("mode", "es"); iters = int(kv.get("iters", 3000))
l2 = float(kv.get("l2", 3)); trim = int(kv.get("trim", 0)); rsm = float(kv.get("rsm", 1.0))
cfg = FitConfig(seed=seed, progress=False, importance=False)
p = prepare(datasets.house_prices_train(), "SalePrice", config=cfg)
ff = p.features
X = ff.X.copy()
for c in ff.categorical:
    X[c] = X[c].astype("object").where(X[c].notna(), "__nan__").astype(str)
cat_idx = [X.columns.get_loc(c) for c in ff.categorical]
y = p.y
oof = np.zeros(len(y)); t0 = time.perf_counter(); iters_used = []; scores = []
for k, (tr, va) in enumerate(fold_splits(p, cfg)):
    if trim:
        keep = training_outliers(subset_frame(ff, tr), y[tr], cfg.trim_z, cfg.seed + k); tr = tr[keep]
    itr, iva = _inner(y[tr], p.info.kind, cfg.inner_fraction, cfg.seed + k)
    a, b = tr[itr], tr[iva]
    common = dict(depth=depth, learning_rate=lr, l2_leaf_reg=l2, loss_function="RMSE", random_seed=cfg.seed * 7919 + k,
                  thread_count=1, verbose=False, allow_writing_files=False, rsm=rsm if rsm < 1 else None)
    if mode == "fixed":
        m = CatBoostRegressor(iterations=iters, **common); m.fit(Pool(X.iloc[tr], y[tr], cat_features=cat_idx)); best = iters
    elif mode == "cv":
        from catboost import cv as cbcv
        from sklearn.model_selection import KFold
        inner = list(KFold(3, shuffle=True, random_state=cfg.seed * 7919 + k).split(tr))
        params = {kk: v for kk, v in common.items() if v is not None and kk not in ("verbose",)}
        params.update(iterations=iters, od_type="Iter", od_wait=200, logging_level="Silent")
        curve = cbcv(Pool(X.iloc[tr], y[tr], cat_features=cat_idx), params, folds=inner, as_pandas=True)
        best = int(curve["test-RMSE-mean"].idxmin()) + 1
        best = max(10, int(round(best * 1.5)))
        m = CatBoostRegressor(iterations=best, **common); m.fit(Pool(X.iloc[tr], y[tr], cat_features=cat_idx))
    else:
        m = CatBoostRegressor(iterations=iters, od_type="Iter", od_wait=200, use_best_model=True, **common)
        m.fit(Pool(X.iloc[a], y[a], cat_features=cat_idx), eval_set=Pool(X.iloc[b], y[b], cat_features=cat_idx))
        best = m.get_best_iteration() + 1
        if mode == "refit":   # refit on all the fold's training rows with the chosen number of trees
            best = int(round(best / 0.85))
            m = CatBoostRegressor(iterations=best, **common); m.fit(Pool(X.iloc[tr], y[tr], cat_features=cat_idx))
    oof[va] = m.predict(Pool(X.iloc[va], cat_features=cat_idx))
    iters_used.append(best); scores.append(B.rmse(oof[va], y[va]))
    print(seed, tag, "fold", k, round(scores[-1], 5), best, round(time.perf_counter() - t0, 1), flush=True)
print(seed, tag, "catboost alone %.5f" % np.mean(scores), "iters", iters_used, "time %.1f s" % (time.perf_counter() - t0), flush=True)
np.savez(f"/tmp/house5/cb_{tag}_{seed}.npz", **{f"cb_{tag}": oof})

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four (house): LightGBM boosted from the linear model's prediction (init_score = a cross-fitted
# lasso-with-products prediction on the fold's training rows), same folds as fit. Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_r4_resgbm.py SEED
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
import lightgbm as lgb
from sklearn.model_selection import KFold
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, training_outliers
from trainmedic.tabular.models import subset_frame, LightGBMModel, GBMConfig
from trainmedic.tabular import preprocess as PP
from sklearn.linear_model import LassoCV
sys.path.insert(0, "benchmarks/house_experiments")
seed = int(sys.argv[1])
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg); y = p.y; n = len(y)
def inter(A, B, ytr, k=10):
    c = np.nan_to_num(np.abs([np.corrcoef(A[:, j], ytr)[0, 1] if A[:, j].std() > 0 else 0 for j in range(A.shape[1])]))
    top = np.argsort(-c)[:k]; ia, ib = np.triu_indices(k, 1)
    PA = A[:, top[ia]] * A[:, top[ib]]; PB = B[:, top[ia]] * B[:, top[ib]]
    mu, sd = PA.mean(0), PA.std(0) + 1e-9
    return np.hstack([A, (PA - mu) / sd]), np.hstack([B, (PB - mu) / sd])
def linfit(ff_tr, ytr, ff_va):
    pre = PP.dense_preprocessor(ff_tr); A = pre.fit_transform(ff_tr.X); B = pre.transform(ff_va.X)
    ym, ys = ytr.mean(), ytr.std(); A, B = inter(A, B, (ytr - ym) / ys)
    est = LassoCV(alphas=np.logspace(-4, -1, 16), cv=5, max_iter=20000, tol=1e-4, random_state=seed).fit(A, (ytr - ym) / ys)
    return est.predict(B) * ys + ym
oof = {"resgbm": np.zeros(n)}
t0 = time.perf_counter()
for k, (tr, va) in enumerate(folds):
    Ftr, Fva = subset_frame(p.features, tr), subset_frame(p.features, va)
    ytr = y[tr]
    base_tr = np.zeros(len(tr))
    for a, b in KFold(5, shuffle=True, random_state=seed + k).split(tr):
        keep = training_outliers(subset_frame(Ftr, a), ytr[a], 4.0, seed + k)
        base_tr[b] = linfit(subset_frame(Ftr, a[keep]), ytr[a[keep]], subset_frame(Ftr, b))
    keep = training_outliers(Ftr, ytr, 4.0, seed + k)
    base_va = linfit(subset_frame(Ftr, np.where(keep)[0]), ytr[keep], Fva)
    m = LightGBMModel("log-regression", 0, GBMConfig(), seed=seed * 7919 + k)
    pre = PP.tree_preprocessor(Ftr); A = pre.fit_transform(Ftr.X).astype(float); B = pre.transform(Fva.X).astype(float)
    ncat = len(Ftr.categorical); nnum = len(Ftr.numeric); cats = list(range(nnum, nnum + ncat))
    params = m._params(seed * 7919 + k, len(tr))
    params.update(learning_rate=0.01)
    data = lgb.Dataset(A, ytr, init_score=base_tr, free_raw_data=False, categorical_feature=cats)
    cv = lgb.cv(params, data, num_boost_round=5000, folds=list(KFold(5, shuffle=True, random_state=seed).split(A)),
                callbacks=[lgb.early_stopping(100, verbose=False)])
    best = len(next(v for kk, v in cv.items() if kk.endswith("-mean")))
    bst = lgb.train(params, lgb.Dataset(A, ytr, init_score=base_tr, categorical_feature=cats), num_boost_round=int(best * 1.25))
    oof["resgbm"][va] = base_va + bst.predict(B)
    print(k, best, round(float(np.sqrt(np.mean((oof["resgbm"][va] - y[va]) ** 2))), 4), f"{time.perf_counter() - t0:.0f}s", flush=True)
print(seed, "resgbm", round(float(np.mean([np.sqrt(np.mean((oof["resgbm"][va] - y[va]) ** 2)) for _, va in folds])), 5))
np.savez(f"/tmp/house/resgbm_{seed}.npz", **oof)

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_cand.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, training_outliers
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular.preprocess import dense_preprocessor, tree_preprocessor
from sklearn.svm import SVR
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeCV, ElasticNetCV
seed = int(sys.argv[1])
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg)
y = p.y
n = len(y)
names = ["svr_a","svr_b","svr_c","kr","ridge","enet","lgb_small"]
oof = {k: np.zeros(n) for k in names}
times = {k: 0.0 for k in names}
for k,(tr,va) in enumerate(folds):
    keep = training_outliers(subset_frame(p.features, tr), y[tr], 4.0, seed+k)
    trd = tr[keep]
    Xtr = subset_frame(p.features, trd); Xva = subset_frame(p.features, va)
    pre = dense_preprocessor(Xtr); A = pre.fit_transform(Xtr.X); B = pre.transform(Xva.X)
    ym, ys = y[trd].mean(), y[trd].std()
    yt = (y[trd]-ym)/ys
    d = A.shape[1]
    def run(name, est, scaled=True):
        t=time.perf_counter()
        est.fit(A, yt if scaled else y[trd]); pr = est.predict(B)
        oof[name][va] = pr*ys+ym if scaled else pr
        times[name]+=time.perf_counter()-t
    run("svr_a", SVR(C=20, epsilon=0.008, gamma=0.0003), scaled=False)
    run("svr_b", SVR(C=3, epsilon=0.02, gamma=0.1/d))
    run("svr_c", SVR(C=10, epsilon=0.01, gamma=0.03/d))
    run("kr", KernelRidge(alpha=0.6, kernel="polynomial", degree=2, coef0=2.5), scaled=False)
    run("ridge", RidgeCV(alphas=np.logspace(-1,3,25)))
    run("enet", ElasticNetCV(l1_ratio=[.1,.5,.9], alphas=np.logspace(-4,-1,12), cv=5, max_iter=20000))
    import lightgbm as lgb
    t=time.perf_counter()
    tp = tree_preprocessor(subset_frame(p.features,tr), native=True)
    G = tp.fit_transform(subset_frame(p.features,tr).X); H = tp.transform(Xva.X)
    cats = list(range(len(p.features.numeric), G.shape[1]))
    m = lgb.train(dict(objective="regression", learning_rate=0.01, num_leaves=5, max_bin=55, bagging_fraction=0.8, bagging_freq=5,
      feature_fraction=0.23, min_data_in_leaf=6, verbose=-1, num_threads=1, seed=seed), lgb.Dataset(G, y[tr], categorical_feature=cats), 3500)
    oof["lgb_small"][va] = m.predict(H); times["lgb_small"] += time.perf_counter()-t
    print("fold", k, flush=True)
for kname in names:
    print(kname, round(float(np.sqrt(np.mean((oof[kname]-y)**2))),5), "folds", [round(float(np.sqrt(np.mean((oof[kname][va]-y[va])**2))),4) for _,va in folds], round(times[kname],1))
np.savez(f"/tmp/fitsearch/cand_{seed}.npz", **oof)

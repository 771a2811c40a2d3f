# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_lin.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, prepare, fold_splits, training_outliers
from trainmedic.tabular.models import subset_frame
from trainmedic.tabular import preprocess as PP
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import QuantileTransformer, StandardScaler
from sklearn.linear_model import LassoCV
from sklearn.kernel_ridge import KernelRidge
seed = int(sys.argv[1])
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg); y = p.y; n=len(y)
def qpre(ff, both=False):
    steps=[("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))]
    if both:
        num = Pipeline(steps+[("log1p", PP.SkewLog1p()),("w",PP.Winsorize(0.01)),("scale", StandardScaler())])
        q = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),("q", QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=0))])
        return ColumnTransformer([("num",num,ff.numeric),("q",q,ff.numeric),("cat",PP._onehot(3),ff.categorical)], sparse_threshold=0.0)
    num = Pipeline(steps+[("q", QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=0)),("scale", StandardScaler())])
    return ColumnTransformer([("num",num,ff.numeric),("cat",PP._onehot(3),ff.categorical)], sparse_threshold=0.0)
variants = {"w01": lambda ff: PP.dense_preprocessor(ff,0.01), "w02": lambda ff: PP.dense_preprocessor(ff,0.02),
            "w05": lambda ff: PP.dense_preprocessor(ff,0.05), "quant": qpre, "both": lambda ff: qpre(ff, True)}
oof = {}
for k,(tr,va) in enumerate(folds):
    keep = training_outliers(subset_frame(p.features, tr), y[tr], 4.0, seed+k); trd=tr[keep]
    Xtr = subset_frame(p.features, trd); Xva = subset_frame(p.features, va)
    ym, ys = y[trd].mean(), y[trd].std(); yt=(y[trd]-ym)/ys
    for vn, f in variants.items():
        pre=f(Xtr); A=pre.fit_transform(Xtr.X); B=pre.transform(Xva.X)
        est=LassoCV(alphas=np.logspace(-4,-1,16), cv=5, max_iter=20000, tol=1e-4, random_state=seed).fit(A,yt)
        oof.setdefault("lin_"+vn, np.zeros(n))[va]=est.predict(B)*ys+ym
        kr=KernelRidge(alpha=0.6, kernel="polynomial", degree=2, coef0=2.5).fit(A, y[trd]-ym)
        oof.setdefault("kr_"+vn, np.zeros(n))[va]=kr.predict(B)+ym
for kname,v in oof.items():
    print(kname, round(float(np.mean([np.sqrt(np.mean((v[va]-y[va])**2)) for _,va in folds])),5))
np.savez(f"/tmp/fitsearch/lin_{seed}.npz", **oof)

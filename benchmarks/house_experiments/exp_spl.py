# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/exp_spl.py SEED
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
from sklearn.preprocessing import SplineTransformer, StandardScaler
from sklearn.linear_model import LassoCV, RidgeCV
seed = int(sys.argv[1])
cfg = FitConfig(seed=seed)
p = prepare(datasets.house_prices_train(), "SalePrice", None, cfg)
folds = fold_splits(p, cfg); y = p.y; n=len(y)
def spre(ff, extrap, knots, keep_lin=True):
    base = [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("log1p", PP.SkewLog1p()), ("w", PP.Winsorize(0.01))]
    many = [c for c in ff.numeric if ff.X[c].nunique() > 6]
    parts=[("num", PP.dense_preprocessor(ff).transformers[0][1], ff.numeric)] if keep_lin else []
    parts.append(("spl", Pipeline(base+[("s", SplineTransformer(n_knots=knots, degree=3, knots="quantile", extrapolation=extrap)), ("sc", StandardScaler())]), many))
    parts.append(("cat",PP._onehot(3),ff.categorical))
    return ColumnTransformer(parts, sparse_threshold=0.0)
variants = {"spl_c5": lambda ff: spre(ff,"constant",5), "spl_l5": lambda ff: spre(ff,"linear",5), "spl_c4": lambda ff: spre(ff,"constant",4),
            "spl_c5_nolin": lambda ff: spre(ff,"constant",5,False)}
oof = {}; tm={}
for k,(tr,va) in enumerate(folds):
    keep = training_outliers(subset_frame(p.features, tr), y[tr], 4.0, seed+k); trd=tr[keep]
    Xtr = subset_frame(p.features, trd); Xva = subset_frame(p.features, va)
    ym, ys = y[trd].mean(), y[trd].std(); yt=(y[trd]-ym)/ys
    for vn, f in variants.items():
        t=time.perf_counter()
        pre=f(Xtr); A=pre.fit_transform(Xtr.X); B=pre.transform(Xva.X)
        est=LassoCV(alphas=np.logspace(-4,-1,16), cv=5, max_iter=20000, tol=1e-4, random_state=seed).fit(A,yt)
        oof.setdefault("lasso_"+vn, np.zeros(n))[va]=est.predict(B)*ys+ym
        tm[vn]=tm.get(vn,0)+time.perf_counter()-t
        est=RidgeCV(alphas=np.logspace(-1,3,20)).fit(A,yt)
        oof.setdefault("ridge_"+vn, np.zeros(n))[va]=est.predict(B)*ys+ym
for kname,v in oof.items():
    print(kname, round(float(np.mean([np.sqrt(np.mean((v[va]-y[va])**2)) for _,va in folds])),5))
print(tm)
np.savez(f"/tmp/fitsearch/spl_{seed}.npz", **oof)

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/blend2.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, itertools, numpy as np
from sklearn.model_selection import KFold
from trainmedic.tabular import blend as B
seed=int(sys.argv[1])
P={}
for f in ["oof","cand","spl","lin"]:
    try:
        d=np.load(f"/tmp/fitsearch/{f}_{seed}.npz"); P.update({k:d[k] for k in d.files})
    except FileNotFoundError: pass
y=P.pop("y"); P.pop("blend", None); P.pop("blend_crossfit", None)
folds=list(KFold(5, shuffle=True, random_state=seed).split(y))
def sc(pred): return np.mean([B.rmse(pred[va],y[va]) for _,va in folds])
def bl(names):
    preds=[P[n] for n in names]; w=B.fit_weights("log-regression",preds,y); o=B.apply_weights("log-regression",preds,w)
    cross=np.zeros(len(y))
    for tr,va in folds:
        ww=B.fit_weights("log-regression",[p[tr] for p in preds],y[tr]); cross[va]=B.apply_weights("log-regression",[p[va] for p in preds],ww)
    return round(sc(o),5), round(sc(cross),5), dict(zip(names,np.round(w["point"],3)))
for combo in [["mlp","lightgbm","linear"], ["mlp","lightgbm","lasso_spl_c5"], ["mlp","lightgbm","linear","lasso_spl_c5"], ["mlp","lightgbm","lasso_spl_c5","kr"] , ["mlp","lightgbm","lasso_spl_c5","enet"]]:
    if all(c in P for c in combo): print(combo, bl(combo))

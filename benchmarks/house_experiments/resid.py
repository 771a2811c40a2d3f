# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Scratch experiment behind benchmarks/TABULAR_RESULTS.md (house prices). Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/resid.py SEED
# Reads/writes its arrays under /tmp/fitsearch/ (exp_base.py first: fit's out-of-fold predictions).
import sys, numpy as np, pandas as pd
from trainmedic import datasets
seed=int(sys.argv[1])
b=np.load(f"/tmp/fitsearch/oof_{seed}.npz"); y=b["y"]
df=pd.read_csv(datasets.house_prices_train())
for m in ("blend","lightgbm","linear","mlp"):
    r=b[m]-y; o=np.argsort(-r**2)
    print(m, "rmse", np.sqrt(np.mean(r**2)).round(4), "without top2", np.sqrt(np.mean(np.delete(r,o[:2])**2)).round(4), "top rows", [(int(df.Id[i]), round(float(r[i]),3)) for i in o[:8]])
from sklearn.model_selection import KFold
folds=list(KFold(5, shuffle=True, random_state=seed).split(y))
for m in ("blend","lightgbm","linear","mlp"):
    r=b[m]-y
    print(m, [round(float(np.sqrt(np.mean(r[va]**2))),4) for _,va in folds], "fold of 1299/524:", [k for k,(_,va) in enumerate(folds) if 1298 in va], [k for k,(_,va) in enumerate(folds) if 523 in va])
    print("  without 1299,524 rows:", round(float(np.mean([np.sqrt(np.mean(r[np.setdiff1d(va,[1298,523])]**2)) for _,va in folds])),4))

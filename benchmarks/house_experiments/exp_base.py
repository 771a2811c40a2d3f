import sys, time, numpy as np
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
seed = int(sys.argv[1])
t=time.perf_counter()
res = fit_table(datasets.house_prices_train(), "SalePrice", config=FitConfig(seed=seed, progress=False, importance=False))
print(seed, {k: round(v["mean"],5) for k,v in res.cv["models"].items()}, res.cv["blend_weights"], round(time.perf_counter()-t,1), flush=True)
np.savez(f"/tmp/fitsearch/oof_{seed}.npz", y=res.y, **{k: v for k,v in res.oof.items()})

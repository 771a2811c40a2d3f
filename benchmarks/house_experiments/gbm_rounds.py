# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# fitF: where fit's LightGBM member spends its rounds. Runs fit_table (every member, importance off) on one
# table and records, for every fold's LightGBM: the inner lgb.cv curve (mean and fold spread per round), the
# time in lgb.cv and in the refit, the rounds chosen, and the refitted booster's staged predictions on the
# fold's validation rows (one column per round), so a stopping rule that stops earlier can be replayed
# offline (gbm_replay.py): a booster's first r trees are those a run of r rounds would have grown.
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 5 python benchmarks/house_experiments/gbm_rounds.py TABLE SEED [lr=R] [models=a,b] [p.PARAM=V] [tag=T]
# -> /tmp/fitF/TABLE_SEED[T].pkl
# TABLE: house, noise (noise_columns), useful (all_useful), visits (DoctorVisits).
import pickle, sys, time
import numpy as np
import lightgbm as lgb
sys.path.insert(0, "benchmarks")
from trainmedic import datasets
from trainmedic.tabular.fit import FitConfig, fit_table
from trainmedic.tabular import models as M

table, seed = sys.argv[1], int(sys.argv[2])
opts = dict(a.split("=") for a in sys.argv[3:] if "=" in a)  # lr=R (LightGBM's rate), models=a,b, tag=T
out = f"/tmp/fitF/{table}_{seed}{opts.get('tag', '')}.pkl"
if "lr" in opts:
    M.GBMConfig.rate = lambda self, n, _r=float(opts["lr"]): _r
models = tuple(opts.get("models", "mlp,lightgbm,linear").split(","))
extra = {k[2:]: float(v) if "." in v else int(v) for k, v in opts.items() if k.startswith("p.")}  # p.max_bin=63
if extra:
    _params = M.LightGBMModel._params
    M.LightGBMModel._params = lambda self, seed, n: {**_params(self, seed, n), **extra}
rec: list[dict] = []
_cv, _train = lgb.cv, lgb.train


def cv(*a, **k):
    k["return_cvbooster"] = True  # kept for the average of the inner models (rec["avg_raw"])
    t = time.perf_counter()
    res = _cv(*a, **k)
    mean = next(v for key, v in res.items() if key.endswith("-mean"))
    std = next(v for key, v in res.items() if key.endswith("-stdv"))
    rec.append({"cv_s": time.perf_counter() - t, "mean": np.array(mean), "std": np.array(std),
                "params": dict(a[0]), "cvbooster": res["cvbooster"]})
    return res


def train(*a, **k):
    t = time.perf_counter()
    b = _train(*a, **k)
    rec[-1]["refit_s"] = time.perf_counter() - t
    rec[-1]["refit_rounds"] = b.current_iteration()
    return b


lgb.cv, lgb.train = cv, train
_predict = M.LightGBMModel.predict


def predict(self, X):
    A = self.pre.transform(X.X).astype(np.float64)
    b = self.boosters[0]
    n = b.current_iteration()
    raw = np.column_stack([b.predict(A, start_iteration=i, num_iteration=1, raw_score=True) for i in range(n)]) \
        if self.task in ("regression", "log-regression") else None
    rec[-1]["staged_raw"] = None if raw is None else np.cumsum(raw, axis=1).astype(np.float32)
    cvb = rec[-1].pop("cvbooster")  # the inner models at the chosen rounds, averaged: a refit-free variant
    rec[-1]["avg_raw"] = np.mean([bb.predict(A, num_iteration=len(rec[-1]["mean"]), raw_score=True)
                                  for bb in cvb.boosters], axis=0)
    return _predict(self, X)


M.LightGBMModel.predict = predict
if table == "house":
    df, target = datasets.house_prices_train(), "SalePrice"
elif table in ("noise", "useful"):
    import tabular_columns as TC
    df, target = (TC.noise_columns(seed) if table == "noise" else TC.all_useful(seed)), "y"
elif table == "visits":
    import tabular as TB
    df, target = TB.doctor_visits(), "y"
t = time.perf_counter()
res = fit_table(df, target, config=FitConfig(seed=seed, progress=False, importance=False, models=models))
wall = time.perf_counter() - t
cvd = res.cv
print(table, seed, "wall", round(wall, 1), {k: round(v["mean"], 5) for k, v in cvd["models"].items()}, flush=True)
from trainmedic.tabular.fit import prepare, fold_splits
cfg = FitConfig(seed=seed, progress=False, importance=False)
folds = fold_splits(prepare(df, target, None, cfg), cfg)
for i, r in enumerate(rec):
    m = r["mean"]
    best = len(m)  # lgb.cv cuts its curves at the best round (early stopping), or runs to the cap
    print(f"fold {i}: cv {r['cv_s']:.1f}s ({len(m)} rounds, {1000 * r['cv_s'] / len(m):.2f} ms/round), "
          f"refit {r.get('refit_s', 0):.1f}s ({r.get('refit_rounds')} rounds), best {best}, "
          f"min {m.min():.5f} std@best {r['std'][best - 1]:.5f}; mean at 100/500/1000/2000/4000: "
          + " ".join(f"{m[j - 1]:.5f}" if j <= len(m) else "-" for j in (100, 500, 1000, 2000, 4000)), flush=True)
pickle.dump({"table": table, "seed": seed, "rec": rec, "y": res.y, "oof": res.oof, "folds": folds, "wall": wall,
             "models": {k: v["mean"] for k, v in cvd["models"].items()}, "cv": {k: v for k, v in cvd.items()
                                                                                if k in ("folds", "blend_weights", "mean")}},
            open(out, "wb"))

# ruff: noqa  (scratch experiment kept as it was run, so its figures can be reproduced)
# Round four: the linear regression model with / without the categories' target means on 24 generated
# tables (a category of 3-150 levels with effects of sd 0 or 0.5, 3 seeds; x1*x2 on even seeds); 500
# training rows, 300 held out. Run from the repo root:
#   PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/house_experiments/r4_te_synthetic.py
import numpy as np, pandas as pd, sys
from trainmedic.tabular.models import LinearModel, subset_frame
from trainmedic.tabular.preprocess import prepare_features
def lv(n, seed, L, sd, inter):
    rng = np.random.default_rng(seed)
    effect = rng.normal(scale=sd, size=L); lvl = rng.integers(0, L, size=n)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 6)})
    df["area"] = [f"a{v}" for v in lvl]; df["kind"] = rng.choice(["p", "q", "r"], size=n)
    y = df.x1 + 0.5 * df.x2 + effect[lvl] + 0.3 * (df.kind == "p") + (0.5 * df.x1 * df.x2 if inter else 0)
    df["y"] = y + rng.normal(scale=0.3, size=n)
    return df
def run(df, te):
    ff = prepare_features(df, ["y"]); y = df.y.to_numpy(); tr, va = np.arange(0, 500), np.arange(500, len(df))
    m = LinearModel("regression", seed=0, params={"target_means": te}).fit(subset_frame(ff, tr), y[tr], None)
    return float(np.sqrt(np.mean((m.predict(subset_frame(ff, va)) - y[va]) ** 2)))
rat = []
for L in (3, 20, 60, 150):
    for sd in (0.0, 0.5):
        for seed in (0, 1, 2):
            df = lv(800, seed, L, sd, seed % 2 == 0)
            a, b = run(df, False), run(df, True); rat.append(b / a)
            print(L, sd, seed, round(a, 4), round(b, 4), round(b / a, 4), flush=True)
print("ratio with/without: min %.4f max %.4f mean %.4f" % (min(rat), max(rat), np.mean(rat)))

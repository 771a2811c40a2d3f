"""Benchmark of ``trainmedic fit`` against the practitioner's pipeline and standard baselines.

House prices (all 1460 rows, shuffled 5-fold, log-RMSE, mean over folds):
  - fit: MLP under Medic(heal), LightGBM, Lasso, their blend;
  - note 001's own pipeline (d2l: standardize numeric columns with train+test rows, fillna(0), one-hot with
    dummy_na, a linear net, Adam lr 5, MSE on raw prices, 100 epochs, batch 64) on the same folds, and on its
    own unshuffled contiguous folds (the 0.1707 reference);
  - Lasso (LassoCV) on log price with plain preprocessing; LightGBM on log price with common settings.
Counts (shuffled 5-fold): mean Poisson deviance and held-out NLL per row on DoctorVisits (shipped) and four
generated heavy-tailed sets (fixed data seeds; ``--seeds`` are the fold seeds): ``nb_small_r`` (NB2 with
covariates, size 0.35), ``zero_inflated_tail`` (logistic excess zeros over an NB with a long tail),
``rare_spikes`` (Poisson with mean 0.45 plus 2 % of rows at 20-90x the mean), ``threshold_tail`` (a step-and-
interaction rate times a log-normal effect: trees win). For each:
  - fit (MLP with a Poisson log-rate head and a softmax-over-counts head, LightGBM-Poisson + NB dispersion,
    Poisson GLM mean + NB2 GLM distribution, their blend: the mean weighted for deviance, the distribution
    for NLL);
  - constant (training mean; NLL of the training frequencies), Poisson GLM, LightGBM-Poisson (Poisson NLL),
    negative-binomial GLM (NB2, maximum likelihood);
  - issue 14's goal: fit's blend deviance and NLL each <= the better of LightGBM-Poisson and the NB GLM.

    python benchmarks/tabular.py                 # seed 0, prints tables, writes benchmarks/results/tabular.json
    python benchmarks/tabular.py --seeds 0 1 2   # the same on several fold seeds
    python benchmarks/tabular.py --only house    # or: --only visits (DoctorVisits alone)
    python benchmarks/tabular.py --only counts --seeds 0 1 2   # every count set (--sets to choose)
    python benchmarks/tabular.py --only speed    # 200k x 50 classification: fit against HistGradientBoosting
    python benchmarks/tabular.py --only select --seeds 0 1 2   # fit vs fit --select (tabular_columns.py)
    python benchmarks/tabular.py --only text --seeds 0 1 2     # fit vs fit --text (listing_text, product_reviews)
    python benchmarks/tabular.py --only dates --seeds 0 1 2    # fit vs the date column dropped
    python benchmarks/tabular.py --markdown FILE.json   # the count, speed and column tables of earlier runs

Speed (``--only speed``, not part of the default run: several minutes): a generated binary classification
file (scikit-learn ``make_classification``, 200,000 rows, 50 features of which 20 informative and 10
redundant, 5 % flipped labels), written to CSV and given to ``fit`` as a user would (reading, checks, the
three models, blend, permutation importance: all timed); the baseline is scikit-learn's
HistGradientBoostingClassifier (defaults, its own early stopping) with 5-fold stratified CV on the same
folds. Both single-threaded (OMP_NUM_THREADS=1, torch 1 thread, LightGBM 1 thread). Reported: wall time of
each, their ratio, and the out-of-fold log-loss of each.

Columns (``--only select``, ``--only text``, ``--only dates``; tabular_columns.py): generated tables on which
an option is run against ``fit`` without it, on the same folds (noise columns among useful ones, and a table
where every column is useful, for ``--select``; a target that depends on a description's wording for
``--text``; a trend and a season in a date column, against the column dropped).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats
from scipy.special import gammaln
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LassoCV, PoissonRegressor
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from trainmedic import datasets
from trainmedic.tabular import blend as B
from trainmedic.tabular.fit import FitConfig, fit_table
from trainmedic.tabular.io import read_table

RESULTS = Path(__file__).resolve().parent / "results"


def rmse_folds(pred: np.ndarray, y: np.ndarray, folds) -> list[float]:
    return [B.rmse(pred[va], y[va]) for _, va in folds]


def summary(vals: list[float]) -> dict:
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "folds": [float(v) for v in vals]}


# ----------------------------------------------------------------------------------------------------------
# house prices
# ----------------------------------------------------------------------------------------------------------
def note_pipeline(train: pd.DataFrame, test: pd.DataFrame, folds, seed: int) -> list[float]:
    """Note 001 (d2l) as written, except the pandas>=3 fix (is_numeric_dtype instead of != 'object')."""
    all_features = pd.concat((train.iloc[:, 1:-1], test.iloc[:, 1:]))
    numeric = [c for c in all_features.columns if pd.api.types.is_numeric_dtype(all_features[c])]
    all_features[numeric] = all_features[numeric].apply(lambda x: (x - x.mean()) / (x.std()))
    all_features[numeric] = all_features[numeric].fillna(0)
    all_features = pd.get_dummies(all_features, dummy_na=True)
    n_train = train.shape[0]
    X = torch.tensor(all_features[:n_train].to_numpy(dtype=np.float32))
    Y = torch.tensor(train.SalePrice.to_numpy(dtype=np.float32).reshape(-1, 1))
    loss = torch.nn.MSELoss()

    def log_rmse(net, features, labels):
        clipped = torch.clamp(net(features), 1, float("inf"))
        return torch.sqrt(loss(torch.log(clipped), torch.log(labels))).item()

    scores = []
    for k, (tr, va) in enumerate(folds):
        torch.manual_seed(seed * 100 + k)
        net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 1))
        opt = torch.optim.Adam(net.parameters(), lr=5, weight_decay=0)
        ds = torch.utils.data.TensorDataset(X[tr], Y[tr])
        it = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed * 100 + k))
        for _ in range(100):
            for xb, yb in it:
                opt.zero_grad()
                ls = loss(net(xb), yb)
                ls.backward()
                opt.step()
        with torch.no_grad():
            scores.append(log_rmse(net, X[va], Y[va]))
    return scores


def d2l_folds(n: int, k: int = 5):
    """d2l's get_k_fold_data: contiguous, unshuffled slices of n // k rows (the last rows left out)."""
    size = n // k
    idx = np.arange(n)
    out = []
    for i in range(k):
        va = idx[i * size:(i + 1) * size]
        tr = np.concatenate([idx[j * size:(j + 1) * size] for j in range(k) if j != i])
        out.append((tr, va))
    return out


def plain_preprocessor(X: pd.DataFrame) -> ColumnTransformer:
    num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    cat = [c for c in X.columns if c not in num]
    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat),
    ])


def house_baselines(X: pd.DataFrame, y: np.ndarray, folds) -> dict[str, list[float]]:
    import lightgbm as lgb

    X = X.copy()
    for c in X.columns:
        if not pd.api.types.is_numeric_dtype(X[c]):
            X[c] = X[c].astype(object).where(X[c].notna(), "missing").astype(str)
    lasso, gbm = np.zeros(len(y)), np.zeros(len(y))
    for tr, va in folds:
        # the common Kaggle recipe: log1p of skewed non-negative numeric columns (decided on training rows)
        Xl = X.copy()
        num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
        skew = X.iloc[tr][num].skew()
        for c in num:
            if abs(skew[c]) > 0.75 and X.iloc[tr][c].min() >= 0:
                Xl[c] = np.log1p(X[c])
        pre = plain_preprocessor(Xl.iloc[tr])
        A, Bv = pre.fit_transform(Xl.iloc[tr]), pre.transform(Xl.iloc[va])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lasso[va] = LassoCV(cv=5, alphas=40, max_iter=20000, random_state=0).fit(A, y[tr]).predict(Bv)
        cats = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        G = X.iloc[tr].copy()
        H = X.iloc[va].copy()
        for c in cats:
            G[c] = G[c].astype("category")
            H[c] = pd.Categorical(H[c].where(H[c].isin(G[c].cat.categories)), categories=G[c].cat.categories)
        m = lgb.LGBMRegressor(n_estimators=1500, learning_rate=0.02, num_leaves=15, subsample=0.8, subsample_freq=1,
                              colsample_bytree=0.5, verbose=-1, n_jobs=1, random_state=0)
        gbm[va] = m.fit(G, y[tr]).predict(H)
    return {"lasso (log price, log1p skewed features)": rmse_folds(lasso, y, folds),
            "lightgbm (log price, common settings)": rmse_folds(gbm, y, folds)}


def bench_house(seed: int, cfg: FitConfig, search: int = 0, search_budget: float | None = None) -> dict:
    train, _ = read_table(datasets.house_prices_train())
    test, _ = read_table(datasets.house_prices_test())
    raw_train = pd.read_csv(datasets.house_prices_train())
    raw_test = pd.read_csv(datasets.house_prices_test())
    y = np.log(train["SalePrice"].to_numpy(dtype=float))
    folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
    out: dict[str, dict] = {}
    t0 = time.perf_counter()
    res = fit_table(datasets.house_prices_train(), "SalePrice", test=datasets.house_prices_test(), config=cfg)
    fit_time = time.perf_counter() - t0
    for name, m in res.cv["models"].items():
        out[f"fit: {name}"] = summary(m["folds"])
    searched = None
    if search:
        from dataclasses import replace

        scfg = replace(cfg, search=search, time_budget=search_budget)
        t0 = time.perf_counter()
        sres = fit_table(datasets.house_prices_train(), "SalePrice", test=datasets.house_prices_test(), config=scfg)
        searched = {"trials": search, "time_budget_s": search_budget, "fit_time_s": round(time.perf_counter() - t0, 1),
                    "blend_weights": sres.cv["blend_weights"],
                    "search": {n: m["search"] for n, m in sres.cv["models"].items() if "search" in m}}
        for name, m in sres.cv["models"].items():
            out[f"fit --search {search}: {name}"] = summary(m["folds"])
    t0 = time.perf_counter()
    out.update({k: summary(v) for k, v in house_baselines(train.drop(columns=["Id", "SalePrice"]), y, folds).items()})
    t1 = time.perf_counter()
    out["note 001 pipeline (same folds)"] = summary(note_pipeline(raw_train, raw_test, folds, seed))
    if seed == 0:
        out["note 001 pipeline (its own unshuffled folds)"] = summary(
            note_pipeline(raw_train, raw_test, d2l_folds(len(raw_train)), seed))
    t2 = time.perf_counter()
    return {"metric": "log_rmse", "rows": int(len(y)), "seed": seed, "results": out,
            "fit_time_s": round(fit_time, 1), "baselines_time_s": round(t1 - t0, 1), "note_time_s": round(t2 - t1, 1),
            "blend_weights": res.cv["blend_weights"], "trimmed_per_fold": (res.cv.get("trimmed_training_rows") or {})
            .get("per_fold"), "searched": searched}


# ----------------------------------------------------------------------------------------------------------
# counts: DoctorVisits and generated heavy-tailed count sets
# ----------------------------------------------------------------------------------------------------------
def _count_features(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Six standard-normal columns, a four-level group and a yes/no flag (one-hot and native-categorical)."""
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 7)})
    X["group"] = rng.choice(["a", "b", "c", "d"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    X["flag"] = rng.choice(["no", "yes"], size=n, p=[0.85, 0.15])
    return X


def _nb_draw(rng: np.random.Generator, mu: np.ndarray, r: float) -> np.ndarray:
    """Negative binomial counts with mean ``mu`` and size ``r`` (variance mu + mu^2 / r): a gamma-Poisson."""
    return rng.poisson(rng.gamma(r, np.asarray(mu) / r))


def nb_small_r(n: int = 4000, seed: int = 100) -> pd.DataFrame:
    """NB2 with covariates (an interaction, two categoricals) and a small size r = 0.35 (alpha 2.9):
    60 % zeros, mean 1.4, the largest counts near 100 (70x the mean)."""
    rng = np.random.default_rng(seed)
    X = _count_features(n, rng)
    eta = (-0.2 + 0.6 * X.x1 - 0.4 * X.x2 + 0.5 * (X.group == "a") - 0.3 * (X.group == "d")
           + 0.3 * X.x3 * X.x4 + 0.4 * (X.flag == "yes"))
    X["y"] = _nb_draw(rng, np.exp(eta), 0.35)
    return X


def zero_inflated_tail(n: int = 4000, seed: int = 101) -> pd.DataFrame:
    """Zero-inflated NB: a logistic excess-zero part (about 75 % structural zeros) and an NB part with
    mean about 4 and size 0.7: 81 % zeros, the rest spread to 100 (70x the mean)."""
    rng = np.random.default_rng(seed)
    X = _count_features(n, rng)
    p0 = 1.0 / (1.0 + np.exp(-(1.3 + 0.9 * X.x1 - 0.6 * (X.flag == "yes"))))
    eta = 1.2 + 0.5 * X.x2 + 0.4 * np.maximum(X.x3, 0) + 0.6 * (X.group == "b")
    y = _nb_draw(rng, np.exp(eta), 0.7)
    y[rng.uniform(size=n) < p0] = 0
    X["y"] = y
    return X


def rare_spikes(n: int = 4000, seed: int = 102) -> pd.DataFrame:
    """Poisson counts with mean 0.45 plus rare spikes: about 2 % of rows (more often when x5 > 1.3 or the
    flag is set, so partly predictable) get 20-90x the mean; 62 % zeros, the largest near 45."""
    rng = np.random.default_rng(seed)
    X = _count_features(n, rng)
    eta = -1.0 + 0.5 * X.x1 + 0.3 * X.x2 + 0.4 * (X.group == "c")
    y = rng.poisson(np.exp(eta)).astype(float)
    base_mean = y.mean()
    p = 0.004 + 0.03 * (X.x5 > 1.3) + 0.02 * (X.flag == "yes")
    spike = rng.uniform(size=n) < p
    y[spike] = np.round(base_mean * rng.uniform(20, 90, size=int(spike.sum())))
    X["y"] = y.astype(int)
    return X


def threshold_tail(n: int = 4000, seed: int = 103) -> pd.DataFrame:
    """A rate that trees find and a GLM cannot: a step in x1, an interaction of x2 with the group and a
    bump in x3, times a log-normal per-row effect (sd 1.2, a Poisson-log-normal tail); 55 % zeros, mean
    about 1, the largest counts 50-100x the mean."""
    rng = np.random.default_rng(seed)
    X = _count_features(n, rng)
    rate = (0.25 + 1.5 * (X.x1 > 0.8) + 1.2 * ((X.x2 < -0.5) & X.group.isin(["b", "c"]))
            + 0.8 * np.exp(-2.0 * X.x3 ** 2)) * np.exp(rng.normal(-0.7, 1.2, size=n))
    X["y"] = rng.poisson(rate)
    return X


def doctor_visits() -> pd.DataFrame:
    df, _ = read_table(datasets.doctor_visits())
    return df.rename(columns={"visits": "y"})


# name -> the table (target column "y"); the generated sets are fixed (their own data seeds); the benchmark's
# --seeds are the fold seeds, as for the shipped files
COUNT_SETS = {
    "doctor_visits": doctor_visits,
    "nb_small_r": nb_small_r,
    "zero_inflated_tail": zero_inflated_tail,
    "rare_spikes": rare_spikes,
    "threshold_tail": threshold_tail,
}


def nb_regression(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """NB2 regression by maximum likelihood: log mu = A @ b (A has an intercept column), dispersion alpha."""

    def nll(theta):
        b, la = theta[:-1], theta[-1]
        eta = np.clip(A @ b, -20, 20)
        mu, r = np.exp(eta), np.exp(-la)
        ll = gammaln(y + r) - gammaln(r) - gammaln(y + 1) + r * np.log(r / (r + mu)) + y * np.log(mu / (r + mu))
        return -np.mean(ll)

    theta0 = np.zeros(A.shape[1] + 1)
    theta0[0] = math.log(max(y.mean(), 1e-3))
    res = optimize.minimize(nll, theta0, method="L-BFGS-B")
    return res.x[:-1], float(np.exp(res.x[-1]))


def count_baselines(X: pd.DataFrame, y: np.ndarray, folds) -> dict[str, dict[str, list[float]]]:
    """Constant, Poisson GLM, LightGBM-Poisson and the negative-binomial GLM on the given folds."""
    import lightgbm as lgb

    from trainmedic.tabular.models import nb_logpmf

    out: dict[str, dict[str, list[float]]] = {}

    def rec(name, mu, logp, yv):
        d = out.setdefault(name, {"poisson_deviance": [], "nll": []})
        d["poisson_deviance"].append(B.poisson_deviance(mu, yv))
        d["nll"].append(B.nll(logp))

    for tr, va in folds:
        pre = plain_preprocessor(X.iloc[tr])
        A, Bv = pre.fit_transform(X.iloc[tr]), pre.transform(X.iloc[va])
        ytr, yva = y[tr], y[va]
        freq = np.bincount(ytr.astype(int), minlength=int(max(y.max(), ytr.max())) + 1) + 0.5
        freq = freq / freq.sum()
        rec("constant", np.full(len(va), ytr.mean()), np.log(freq[yva.astype(int)]), yva)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            glm = PoissonRegressor(alpha=1e-4, max_iter=1000).fit(A, ytr)
        mu = glm.predict(Bv)
        rec("Poisson GLM", mu, stats.poisson.logpmf(yva, mu), yva)
        m = lgb.LGBMRegressor(objective="poisson", n_estimators=300, learning_rate=0.03, num_leaves=15,
                              min_child_samples=20, subsample=0.8, subsample_freq=1, verbose=-1, n_jobs=1,
                              random_state=0).fit(A, ytr)
        mu = m.predict(Bv)
        rec("LightGBM-Poisson", mu, stats.poisson.logpmf(yva, mu), yva)
        A1, B1 = np.column_stack([np.ones(len(A)), A]), np.column_stack([np.ones(len(Bv)), Bv])
        b, alpha = nb_regression(A1, ytr)
        mu = np.exp(np.clip(B1 @ b, -20, 20))
        rec("negative binomial GLM", mu, nb_logpmf(yva, mu, alpha), yva)
    return out


visits_baselines = count_baselines  # the earlier name


GOAL_BASELINES = ("LightGBM-Poisson", "negative binomial GLM")


def count_goal(results: dict) -> dict:
    """Issue 14's goal on one set and seed: fit's deviance and NLL each <= the better of the two baselines."""
    out = {}
    for metric in ("poisson_deviance", "nll"):
        bar = min(results[b][metric]["mean"] for b in GOAL_BASELINES)
        got = results["fit: blend"][metric]["mean"]
        out[metric] = {"fit": got, "bar": bar, "met": bool(got <= bar)}
    out["met"] = all(v["met"] for v in out.values())
    return out


def bench_counts(name: str, seed: int, cfg: FitConfig) -> dict:
    df = COUNT_SETS[name]()
    y = df["y"].to_numpy(dtype=float)
    folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
    t0 = time.perf_counter()
    res = fit_table(df, "y", config=cfg)
    fit_time = time.perf_counter() - t0
    out: dict[str, dict] = {}
    for model, m in res.cv["models"].items():
        out[f"fit: {model}"] = {"poisson_deviance": summary(m["folds"]), "nll": summary(m["nll"]["folds"])}
    for model, d in count_baselines(df.drop(columns=["y"]), y, folds).items():
        out[model] = {k: summary(v) for k, v in d.items()}
    return {"set": name, "metric": "poisson_deviance", "rows": int(len(y)), "seed": seed,
            "target": {"mean": float(y.mean()), "zero_fraction": float(np.mean(y == 0)), "max": int(y.max())},
            "results": out, "goal": count_goal(out), "fit_time_s": round(fit_time, 1),
            "blend_weights": res.cv["blend_weights"]}


def bench_visits(seed: int, cfg: FitConfig) -> dict:
    return bench_counts("doctor_visits", seed, cfg)


# ----------------------------------------------------------------------------------------------------------
# speed: 200k x 50 classification
# ----------------------------------------------------------------------------------------------------------
def bench_speed(seed: int, rows: int = 200_000, budget: str | None = None) -> dict:
    """``budget``: fit's --time-budget in seconds, or "auto": the goal, 3 x the baseline's measured time
    (the budget covers the whole fit: reading, checks, models, importance), or None: no budget."""
    import tempfile

    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    X, y = make_classification(n_samples=rows, n_features=50, n_informative=20, n_redundant=10, flip_y=0.05,
                               random_state=seed)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["target"] = y
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y))
    t0 = time.perf_counter()
    oof = np.zeros((len(y), 2))
    for tr, va in folds:
        m = HistGradientBoostingClassifier(random_state=seed).fit(X[tr], y[tr])
        oof[va] = m.predict_proba(X[va])
    hgb_time = time.perf_counter() - t0
    hgb = [B.log_loss(oof[va], y[va]) for _, va in folds]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "speed.csv"
        df.to_csv(path, index=False)
        seconds = 3.0 * hgb_time if budget == "auto" else float(budget) if budget else None
        cfg = FitConfig(seed=seed, progress="lines", time_budget=seconds)
        t0 = time.perf_counter()
        res = fit_table(str(path), "target", config=cfg)
        fit_time = time.perf_counter() - t0
    models = {name: {"log_loss": m["mean"], "time_s": m.get("time_s")} for name, m in res.cv["models"].items()}
    return {"rows": rows, "features": 50, "seed": seed, "time_budget": budget,
            "time_budget_s": round(seconds, 1) if seconds else None,
            "hgb": {"time_s": round(hgb_time, 1), "log_loss": float(np.mean(hgb)), "folds": hgb},
            "fit": {"time_s": round(fit_time, 1), "log_loss": res.cv["mean"], "folds": res.cv["folds"],
                    "models": models, "importance_time_s": (res.cv.get("importance") or {}).get("time_s")},
            "time_ratio": round(fit_time / hgb_time, 2)}


def print_speed(r: dict) -> None:
    print(f"\nSpeed: {r['rows']} x {r['features']} binary classification, 5 folds (seed {r['seed']}), one thread")
    print(f"  HistGradientBoosting 5-fold CV: {r['hgb']['time_s']:7.1f} s   log-loss {r['hgb']['log_loss']:.4f}")
    print(f"  trainmedic fit (blend):         {r['fit']['time_s']:7.1f} s   log-loss {r['fit']['log_loss']:.4f}"
          f"   ({r['time_ratio']}x the time)")
    for name, m in r["fit"]["models"].items():
        print(f"    {name:30s} log-loss {m['log_loss']:.4f}  per-fold seconds {m['time_s']}")


def print_house(r: dict) -> None:
    print(f"\nHouse prices: log-RMSE, mean over 5 shuffled folds (seed {r['seed']}), all {r['rows']} rows"
          f"  [fit wall time {r['fit_time_s']} s]")
    if r.get("searched"):
        print(f"  [fit --search {r['searched']['trials']} wall time {r['searched']['fit_time_s']} s]")
    print(f"  {'model':48s} {'mean':>8s} {'std':>8s}   folds")
    for name, s in r["results"].items():
        print(f"  {name:48s} {s['mean']:8.4f} {s['std']:8.4f}   {' '.join(f'{v:.4f}' for v in s['folds'])}")


def print_counts(r: dict) -> None:
    t = r["target"]
    print(f"\n{r['set']} ({r['rows']} rows, mean {t['mean']:.2f}, {t['zero_fraction']:.0%} zeros, max {t['max']}): "
          f"mean Poisson deviance and held-out NLL per row, 5 shuffled folds (seed {r['seed']})"
          f"  [fit wall time {r['fit_time_s']} s]")
    print(f"  {'model':48s} {'deviance':>9s} {'NLL/row':>9s}")
    for name, s in r["results"].items():
        print(f"  {name:48s} {s['poisson_deviance']['mean']:9.4f} {s['nll']['mean']:9.4f}")
    g = r["goal"]
    print(f"  goal (fit's blend <= the better of {' and '.join(GOAL_BASELINES)}): "
          + "; ".join(f"{m} {g[m]['fit']:.4f} vs {g[m]['bar']:.4f} {'met' if g[m]['met'] else 'MISSED'}"
                      for m in ("poisson_deviance", "nll")))


print_visits = print_counts


def markdown(docs: list[dict]) -> str:
    """The count tables (one per set: every seed's baselines and fit, both metrics, the goal) and the speed
    rows of earlier runs' JSON documents (a document may gather several under "runs")."""
    docs = [d for doc in docs for d in doc.get("runs", [doc])]
    counts = [r for d in docs for r in d.get("counts", [])]
    lines: list[str] = []
    shown = ("constant", "Poisson GLM", "negative binomial GLM", "LightGBM-Poisson", "fit: mlp", "fit: lightgbm",
             "fit: linear", "fit: blend", "fit: blend_crossfit")
    for name in dict.fromkeys(r["set"] for r in counts):
        runs = sorted((r for r in counts if r["set"] == name), key=lambda r: r["seed"])
        t = runs[0]["target"]
        lines += [f"### {name} ({runs[0]['rows']} rows, mean {t['mean']:.2f}, {t['zero_fraction']:.0%} zeros, "
                  f"max {t['max']})", "",
                  "| model | " + " | ".join(f"seed {r['seed']} deviance | seed {r['seed']} NLL" for r in runs) + " |",
                  "|---|" + "---|---|" * len(runs)]
        for model in shown:
            if all(model in r["results"] for r in runs):
                cells = []
                for r in runs:
                    d, n = r["results"][model]["poisson_deviance"]["mean"], r["results"][model]["nll"]["mean"]
                    bold = "**" if model == "fit: blend" else ""
                    cells += [f"{bold}{d:.4f}{bold}", f"{bold}{n:.4f}{bold}"]
                lines.append(f"| {model} | " + " | ".join(cells) + " |")
        goal = []
        for r in runs:
            g = r["goal"]
            goal += ["met" if g["poisson_deviance"]["met"] else "**missed**", "met" if g["nll"]["met"] else "**missed**"]
        lines += ["| goal: blend <= better of NB GLM, LightGBM-Poisson | " + " | ".join(goal) + " |", ""]
        lines.append("fit wall time per seed (s): " + ", ".join(str(r["fit_time_s"]) for r in runs) + "; "
                     "blend weights (seed 0): " + json.dumps(runs[0]["blend_weights"]))
        lines.append("")
    for d in docs:
        for r in d.get("speed", []):
            lines += ["| speed run | rows x features | HistGradientBoosting 5-fold | fit | ratio | budget |",
                      "|---|---|---|---|---|---|",
                      f"| seed {r['seed']} | {r['rows']} x {r['features']} | {r['hgb']['time_s']} s, log-loss "
                      f"{r['hgb']['log_loss']:.4f} | {r['fit']['time_s']} s, log-loss {r['fit']['log_loss']:.4f} | "
                      f"**{r['time_ratio']}x** | {r['time_budget']} ({r['time_budget_s']} s) |", ""]
    columns = [r for d in docs for r in d.get("columns", [])]
    if columns:
        from tabular_columns import markdown as columns_markdown

        lines.append(columns_markdown(columns))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", choices=["house", "visits", "counts", "speed", "select", "text", "dates"],
                    help="visits: DoctorVisits alone; counts: every count set (or those of --sets)")
    ap.add_argument("--sets", nargs="+", choices=list(COUNT_SETS), help="the count sets of --only counts")
    ap.add_argument("--tables", nargs="+", choices=["noise_columns", "all_useful", "listing_text", "product_reviews"],
                    help="the tables of --only select or --only text (default both of that benchmark)")
    ap.add_argument("--arms", nargs="+", choices=["fit", "select", "oracle"],
                    help="the arms of --only select to run (default all three: fit, fit --select, the useful "
                    "columns only)")
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the speed benchmark (default 200000)")
    ap.add_argument("--time-budget", help="fit's --time-budget in the speed benchmark: seconds, or auto "
                    "(3 x the baseline's measured time)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--search", type=int, default=0, metavar="N",
                    help="house: also run fit --search N (N Optuna trials per model per fold) on the same folds")
    ap.add_argument("--search-budget", type=float, metavar="SECONDS", help="house: fit --time-budget of the search run")
    ap.add_argument("--out", default=str(RESULTS / "tabular.json"))
    ap.add_argument("--markdown", nargs="+", metavar="JSON", help="print the tables of earlier runs and exit")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown([json.loads(Path(f).read_text()) for f in args.markdown]))
        return 0
    torch.set_num_threads(args.threads)
    doc = {"benchmark": "tabular", "argv": sys.argv[1:] if argv is None else argv,
           "python": platform.python_version(), "torch": torch.__version__,
           "cpus": os.cpu_count(), "load_at_start": os.getloadavg(), "house": [], "counts": [], "speed": [], "columns": []}
    if args.only == "counts":
        sets = args.sets or list(COUNT_SETS)
    elif args.only in (None, "visits"):
        sets = ["doctor_visits"]
    else:
        sets = []
    for seed in args.seeds:
        if args.only == "speed":
            r = bench_speed(seed, args.rows, args.time_budget)
            doc["speed"].append(r)
            print_speed(r)
            continue
        if args.only in ("select", "text", "dates"):
            import tabular_columns

            kw = {"tables": tuple(args.tables)} if args.only in ("select", "text") and args.tables else {}
            if args.only == "select" and args.arms:
                names = {"fit": "fit", "select": "fit --select", "oracle": "fit, useful columns only"}
                kw["arms_run"] = tuple(names[a] for a in args.arms)
            runs = tabular_columns.BENCHES[args.only](seed, **kw)
            doc["columns"].extend(runs)
            tabular_columns.print_runs(runs)
            _write(args, doc)
            sys.stdout.flush()
            continue
        if args.only in (None, "house"):
            r = bench_house(seed, FitConfig(seed=seed, progress=False), args.search, args.search_budget)
            doc["house"].append(r)
            print_house(r)
            _write(args, doc)
        for name in sets:
            r = bench_counts(name, seed, FitConfig(seed=seed, progress=False))
            doc["counts"].append(r)
            print_counts(r)
            sys.stdout.flush()
        sys.stdout.flush()
    doc["load_at_end"] = os.getloadavg()
    if len(args.seeds) > 1 and doc["house"]:
        print(f"\nhouse: mean over seeds {args.seeds}")
        for n in doc["house"][0]["results"]:
            vals = [r["results"][n]["mean"] for r in doc["house"] if n in r["results"]]
            print(f"  {n:48s} {np.mean(vals):.4f}")
    if doc["counts"]:
        print("\ncounts: issue 14's goal per set and seed (deviance and NLL each <= the better baseline)")
        for r in doc["counts"]:
            g = r["goal"]
            print(f"  {r['set']:20s} seed {r['seed']}: deviance {g['poisson_deviance']['fit']:.4f} <= "
                  f"{g['poisson_deviance']['bar']:.4f} {g['poisson_deviance']['met']}, "
                  f"NLL {g['nll']['fit']:.4f} <= {g['nll']['bar']:.4f} {g['nll']['met']}")
    print(f"\nwrote {_write(args, doc)}")
    return 0


def _write(args: argparse.Namespace, doc: dict) -> Path:
    """Write the results so far (after every house seed too: a long run keeps what it measured)."""
    out = Path(args.out if args.only != "speed" or args.out != str(RESULTS / "tabular.json")
               else RESULTS / "tabular_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main())

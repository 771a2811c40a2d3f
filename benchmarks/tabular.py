"""Benchmark of ``trainmedic fit`` against the practitioner's pipeline and standard baselines.

House prices (all 1460 rows, shuffled 5-fold, log-RMSE, mean over folds):
  - fit: MLP under Medic(heal), LightGBM, Lasso, their blend;
  - note 001's own pipeline (d2l: standardize numeric columns with train+test rows, fillna(0), one-hot with
    dummy_na, a linear net, Adam lr 5, MSE on raw prices, 100 epochs, batch 64) on the same folds, and on its
    own unshuffled contiguous folds (the 0.1707 reference);
  - Lasso (LassoCV) on log price with plain preprocessing; LightGBM on log price with common settings.
DoctorVisits (visits, shuffled 5-fold): mean Poisson deviance and held-out NLL per row for
  - fit (MLP with a Poisson log-rate head and a softmax-over-counts head, LightGBM-Poisson + NB dispersion,
    Poisson GLM + NB dispersion, their blend);
  - constant (training mean; NLL of the training frequencies), Poisson GLM, LightGBM-Poisson (Poisson NLL),
    negative-binomial GLM (NB2, maximum likelihood).

    python benchmarks/tabular.py                 # seed 0, prints tables, writes benchmarks/results/tabular.json
    python benchmarks/tabular.py --seeds 0 1 2   # the same on several fold seeds
    python benchmarks/tabular.py --only house    # or: --only visits
    python benchmarks/tabular.py --only speed    # 200k x 50 classification: fit against HistGradientBoosting

Speed (``--only speed``, not part of the default run: several minutes): a generated binary classification
file (scikit-learn ``make_classification``, 200,000 rows, 50 features of which 20 informative and 10
redundant, 5 % flipped labels), written to CSV and given to ``fit`` as a user would (reading, checks, the
three models, blend, permutation importance: all timed); the baseline is scikit-learn's
HistGradientBoostingClassifier (defaults, its own early stopping) with 5-fold stratified CV on the same
folds. Both single-threaded (OMP_NUM_THREADS=1, torch 1 thread, LightGBM 1 thread). Reported: wall time of
each, their ratio, and the out-of-fold log-loss of each.
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
# doctor visits
# ----------------------------------------------------------------------------------------------------------
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


def visits_baselines(X: pd.DataFrame, y: np.ndarray, folds) -> dict[str, dict[str, list[float]]]:
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


def bench_visits(seed: int, cfg: FitConfig) -> dict:
    df, _ = read_table(datasets.doctor_visits())
    y = df["visits"].to_numpy(dtype=float)
    folds = list(KFold(5, shuffle=True, random_state=seed).split(y))
    t0 = time.perf_counter()
    res = fit_table(datasets.doctor_visits(), "visits", config=cfg)
    fit_time = time.perf_counter() - t0
    out: dict[str, dict] = {}
    for name, m in res.cv["models"].items():
        out[f"fit: {name}"] = {"poisson_deviance": summary(m["folds"]), "nll": summary(m["nll"]["folds"])}
    for name, d in visits_baselines(df.drop(columns=["visits"]), y, folds).items():
        out[name] = {k: summary(v) for k, v in d.items()}
    return {"metric": "poisson_deviance", "rows": int(len(y)), "seed": seed, "results": out,
            "fit_time_s": round(fit_time, 1), "blend_weights": res.cv["blend_weights"]}


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


def print_visits(r: dict) -> None:
    print(f"\nDoctorVisits: mean Poisson deviance and held-out NLL per row, 5 shuffled folds (seed {r['seed']})"
          f"  [fit wall time {r['fit_time_s']} s]")
    print(f"  {'model':48s} {'deviance':>9s} {'NLL/row':>9s}")
    for name, s in r["results"].items():
        print(f"  {name:48s} {s['poisson_deviance']['mean']:9.4f} {s['nll']['mean']:9.4f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", choices=["house", "visits", "speed"])
    ap.add_argument("--rows", type=int, default=200_000, help="rows of the speed benchmark (default 200000)")
    ap.add_argument("--time-budget", help="fit's --time-budget in the speed benchmark: seconds, or auto "
                    "(3 x the baseline's measured time)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--search", type=int, default=0, metavar="N",
                    help="house: also run fit --search N (N Optuna trials per model per fold) on the same folds")
    ap.add_argument("--search-budget", type=float, metavar="SECONDS", help="house: fit --time-budget of the search run")
    ap.add_argument("--out", default=str(RESULTS / "tabular.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    doc = {"benchmark": "tabular", "python": platform.python_version(), "torch": torch.__version__,
           "cpus": os.cpu_count(), "command": "python benchmarks/tabular.py " + " ".join(argv if argv is not None
                                                                                  else sys.argv[1:]),
           "house": [], "visits": [], "speed": []}
    for seed in args.seeds:
        if args.only == "speed":
            r = bench_speed(seed, args.rows, args.time_budget)
            doc["speed"].append(r)
            print_speed(r)
            continue
        cfg = FitConfig(seed=seed, progress=False)
        if args.only in (None, "house"):
            r = bench_house(seed, cfg, args.search, args.search_budget)
            doc["house"].append(r)
            print_house(r)
            _write(args, doc)
        if args.only in (None, "visits"):
            r = bench_visits(seed, FitConfig(seed=seed, progress=False))
            doc["visits"].append(r)
            print_visits(r)
        sys.stdout.flush()
    if len(args.seeds) > 1:
        for key, metric in (("house", None), ("visits", "poisson_deviance")):
            if doc[key]:
                names = list(doc[key][0]["results"])
                print(f"\n{key}: mean over seeds {args.seeds}")
                for n in names:
                    vals = [r["results"][n][metric]["mean"] if metric else r["results"][n]["mean"]
                            for r in doc[key] if n in r["results"]]
                    print(f"  {n:48s} {np.mean(vals):.4f}")
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

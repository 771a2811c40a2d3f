"""``fit --select``, ``fit --text`` and date columns on generated tables: each option against ``fit`` without it.

Issue 14 asks for a benchmark figure of every goal; the options had test figures only. Each arm here is the
whole default ``fit`` (5 shuffled folds, MLP + LightGBM + linear, blend, importance), run on the same table
with the same ``--seed``, hence the same folds (the rows and the target are the same in both arms: a dropped
or kept column does not change the split). Reported per arm: the blend's mean fold metric (what ``fit``
prints), each member's, the wall time; for ``--select``, which columns each fold dropped and whether the
selection was kept.

The tables are generated here from a data seed (1000 + the benchmark's seed), so ``--seeds 0 1 2`` are
three different tables and three different fold splits; nothing is shipped or downloaded.

- ``select`` (two tables):
  ``noise_columns``: 1,500 rows; 6 useful numeric columns (linear, sine, an interaction, an absolute value) and
  a useful 4-level category, beside 50 normal, 6 uniform and 4 categorical columns of pure noise (60 in all);
  regression. Selection should help here, if anywhere; the "useful columns only" arm (fit given only the 7
  useful columns) is what a perfect selection would reach.
  ``all_useful``: 1,500 rows, 12 numeric columns each with its own effect (coefficients 0.25-1.0, two of
  them through a nonlinearity), noise sd 0.7; every column matters, so selection should find nothing to drop
  or not be kept.
- ``text`` (``listing_text``): 1,500 rows, binary target; 4 numeric columns and a 3-level category carry
  part of the signal, the rest is the *wording* of a free-text description: 6-11 words from a neutral
  vocabulary of 40 and 0-3 condition words, each either positive (8 synonyms) or negative (8 synonyms); the
  log-odds move by 0.9 per positive and -0.9 per negative word. ``fit`` leaves the column out by default
  (free text, TM118); ``fit --text description`` keeps it as TF-IDF -> SVD components fitted in the folds
  and, beside them, a cross-fitted ridge / logistic score of the TF-IDF (``text_score.py``).
  ``product_reviews`` (a second table of another kind, not used to design the score): 1,500 rows,
  regression; a product review of 8-15 words from a vocabulary of 50 shopping words, holding 0-2 of 8
  two-word *phrases* ("highly recommend" +0.9, "waste money" -1.0, ...) whose words also occur on their own
  in other reviews (so a word alone says little; the pair says it), beside 3 numeric columns and a brand
  category; noise sd 0.6. Its arms: ``fit`` (column left out), ``fit --text review`` with the SVD only (the
  score switched off in that process: the encoder as it was before the score) and ``fit --text review``.
- ``dates`` (``seasonal_dates``): 1,500 rows, regression; a date column written as text (``2016-03-27``) over
  eight years carries a trend (0.25 a year), a season (amplitude 0.8, peak in July) and a weekend effect
  (0.4), beside 3 numeric columns and a category. ``fit`` today reads it as year, month, day of the week and
  days since 1970; the other arm is the same table with the date column removed (what a user gets who drops
  a column that ``fit`` would otherwise call an identifier).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.tabular.fit import FitConfig, fit_table

DATA_SEED = 1000  # the table of benchmark seed s is drawn with data seed DATA_SEED + s


# ----------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------
USEFUL_NOISE = ["u1", "u2", "u3", "u4", "u5", "u6", "ucat"]


def noise_columns(seed: int, n: int = 1500) -> pd.DataFrame:
    """7 useful columns among 60 noise columns (regression); see the module."""
    rng = np.random.default_rng(DATA_SEED + seed)
    u = {f"u{i}": rng.normal(size=n) for i in range(1, 7)}
    ucat = rng.choice(["a", "b", "c", "d"], size=n)
    y = (1.0 * u["u1"] + 1.2 * np.sin(1.5 * u["u2"]) + 0.8 * u["u3"] * u["u4"] + 0.7 * np.abs(u["u5"])
         - 0.6 * u["u6"] + 0.9 * (ucat == "a") - 0.5 * (ucat == "d") + rng.normal(scale=0.6, size=n))
    df = pd.DataFrame(u)
    df["ucat"] = ucat
    for i in range(50):
        df[f"n{i:02d}"] = rng.normal(size=n)
    for i in range(6):
        df[f"r{i}"] = rng.uniform(0, 100, size=n)
    for i in range(4):
        df[f"c{i}"] = rng.choice([f"k{j}" for j in range(3 + 2 * i)], size=n)
    df["y"] = y
    return df


def all_useful(seed: int, n: int = 1500) -> pd.DataFrame:
    """12 columns, every one with an effect on the target (regression); see the module."""
    rng = np.random.default_rng(DATA_SEED + seed)
    X = pd.DataFrame({f"a{i:02d}": rng.normal(size=n) for i in range(12)})
    coef = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25])
    y = X.to_numpy() @ coef
    y += 0.6 * np.sin(2.0 * X.a00) + 0.5 * X.a01 ** 2  # two nonlinear parts
    X["y"] = y + rng.normal(scale=0.7, size=n)
    return X


NEUTRAL = ("apartment flat house room rooms kitchen bathroom garden street station park school shops bus floor "
           "view window balcony storage parking heating lift entrance hall stairs corner block quiet area near "
           "close walk minutes centre town city owner available now offered rent share").split()
POSITIVE = "renovated bright spacious modern lovely immaculate sunny stylish".split()
NEGATIVE = "damp cramped tired dated noisy worn mouldy dark".split()


def listing_text(seed: int, n: int = 1500) -> pd.DataFrame:
    """A binary target that depends partly on a description's wording; see the module."""
    rng = np.random.default_rng(DATA_SEED + seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 5)})
    X["kind"] = rng.choice(["flat", "house", "studio"], size=n, p=[0.5, 0.3, 0.2])
    words, tone = [], np.zeros(n)
    for i in range(n):
        w = list(rng.choice(NEUTRAL, size=int(rng.integers(6, 12))))
        for _ in range(int(rng.integers(0, 4))):
            if rng.uniform() < 0.5:
                w.append(str(rng.choice(POSITIVE)))
                tone[i] += 1
            else:
                w.append(str(rng.choice(NEGATIVE)))
                tone[i] -= 1
        rng.shuffle(w)
        words.append(" ".join(w))
    X["description"] = words
    eta = -0.2 + 0.8 * X.x1 - 0.6 * X.x2 + 0.4 * X.x3 * (X.kind == "house") + 0.9 * tone
    X["y"] = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
    return X


REVIEW_WORDS = ("bought this for my kitchen the box arrived on time and it was packed in a small bag size colour "
                "battery charger cable screen button price delivery seller order week month daughter son gift "
                "after before using with daily use also came very quite really it is my").split()
PHRASES = {"highly recommend": 0.9, "works perfectly": 0.8, "great value": 0.6, "well made": 0.5,
           "stopped working": -1.1, "waste money": -1.0, "poor quality": -0.7, "returned it": -0.6}


def product_reviews(seed: int, n: int = 1500) -> pd.DataFrame:
    """A regression target that depends on a few two-word phrases of a review; see the module."""
    rng = np.random.default_rng(DATA_SEED + 500 + seed)
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 4)})
    X["brand"] = rng.choice(["acme", "globex", "initech", "umbrella"], size=n)
    loose = sorted({w for p in PHRASES for w in p.split()})
    phrases, effects = list(PHRASES), np.array(list(PHRASES.values()))
    text, effect = [], np.zeros(n)
    for i in range(n):
        chunks = [str(w) for w in rng.choice(REVIEW_WORDS, size=int(rng.integers(8, 16)))]
        if rng.uniform() < 0.3:  # a phrase's word on its own, in no phrase: the word alone is not the signal
            chunks.append(str(rng.choice(loose)))
        for j in rng.choice(len(phrases), size=int(rng.integers(0, 3)), replace=False):
            chunks.append(phrases[j])
            effect[i] += effects[j]
        rng.shuffle(chunks)
        text.append(" ".join(chunks))
    X["review"] = text
    X["y"] = (3.0 + 0.6 * X.x1 - 0.4 * X.x2 + 0.3 * np.tanh(X.x3) + 0.3 * (X.brand == "acme") + effect
              + rng.normal(scale=0.6, size=n))
    return X


def seasonal_dates(seed: int, n: int = 1500) -> pd.DataFrame:
    """A target with a trend, a season and a weekend effect in a date column; see the module."""
    rng = np.random.default_rng(DATA_SEED + seed)
    start = pd.Timestamp("2016-01-01")
    days = rng.integers(0, 8 * 365, size=n)
    d = start + pd.to_timedelta(days, unit="D")
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 4)})
    X["region"] = rng.choice(["north", "south", "east", "west"], size=n)
    X["sold_on"] = d.strftime("%Y-%m-%d")
    years = days / 365.25
    season = 0.8 * np.cos(2 * np.pi * (d.month.to_numpy() - 7) / 12.0)
    weekend = 0.4 * (d.dayofweek.to_numpy() >= 5)
    X["y"] = (0.25 * years + season + weekend + 0.7 * X.x1 - 0.5 * X.x2 + 0.3 * (X.region == "south")
              + rng.normal(scale=0.5, size=n))
    return X


# ----------------------------------------------------------------------------------------------------------
# arms
# ----------------------------------------------------------------------------------------------------------
def _arm(df: pd.DataFrame, cfg: FitConfig, target: str = "y") -> dict[str, Any]:
    t0 = time.perf_counter()
    res = fit_table(df, target, config=cfg)
    wall = time.perf_counter() - t0
    cv = res.cv
    return {"metric": cv["metric"], "mean": cv["mean"], "folds": cv["folds"], "time_s": round(wall, 1),
            "models": {m: round(v["mean"], 6) for m, v in cv["models"].items()},
            "blend_weights": cv["blend_weights"], "selection": cv.get("selection"),
            "text_columns": cv.get("text_columns"), "features": cv.get("features"),
            "dropped_columns": cv.get("dropped_columns")}


def _selection_digest(sel: dict | None, useful: list[str] | None) -> dict[str, Any] | None:
    """What the selection did, per fold: candidates, kept, dropped; useful columns dropped (if known)."""
    if not sel:
        return None
    folds = sel["per_fold"]
    out = {"folds_kept": sel["folds_kept"], "candidates_per_fold": [len(f["candidates"]) for f in folds],
           "dropped_per_fold": [len(f["dropped"]) for f in folds], "kept_per_fold": [f["kept"] for f in folds],
           "dropped_in_every_kept_fold": sel["dropped_in_every_kept_fold"],
           "time_s_per_fold": [f["time_s"] for f in folds]}
    if useful is not None:
        out["useful_dropped_per_fold"] = [sorted(c for c in f["dropped"] if c in useful) for f in folds]
        out["useful_candidates_per_fold"] = [sorted(c for c in f["candidates"] if c in useful) for f in folds]
    return out


SELECT_ARMS = ("fit", "fit --select", "fit, useful columns only")


def bench_select(seed: int, tables: tuple[str, ...] = ("noise_columns", "all_useful"), oracle: bool = True,
                 arms_run: tuple[str, ...] = SELECT_ARMS) -> list:
    """``arms_run``: the arms to run (``--arms``; all by default). The arms without ``--select`` do not depend
    on the selection's code, so a change to it can be measured on the ``fit --select`` arm alone."""
    out = []
    for name in tables:
        df = noise_columns(seed) if name == "noise_columns" else all_useful(seed)
        cfg = FitConfig(seed=seed, progress=False)
        arms = {}
        if "fit" in arms_run:
            arms["fit"] = _arm(df, cfg)
        if "fit --select" in arms_run:
            arms["fit --select"] = _arm(df, replace(cfg, select=True))
        useful = USEFUL_NOISE if name == "noise_columns" else [c for c in df.columns if c != "y"]
        if oracle and name == "noise_columns" and SELECT_ARMS[2] in arms_run:
            arms["fit, useful columns only"] = _arm(df[[*USEFUL_NOISE, "y"]], cfg)
        digest = _selection_digest(arms["fit --select"]["selection"], useful) if "fit --select" in arms else None
        out.append({"benchmark": "select", "table": name, "seed": seed, "rows": len(df),
                    "columns": df.shape[1] - 1, "useful": useful, "arms": arms, "selection": digest})
    return out


@contextlib.contextmanager
def _svd_only():
    """The text encoder as it was before the supervised score: the score switched off in this process."""
    from trainmedic.tabular import text_score

    real = text_score.TextScore.fit_transform
    text_score.TextScore.fit_transform = lambda self, T, y: None
    try:
        yield
    finally:
        text_score.TextScore.fit_transform = real


def bench_text(seed: int, tables: tuple[str, ...] = ("listing_text", "product_reviews"),
               svd_only: bool = False) -> list:
    """Each table: ``fit`` against ``fit --text``; ``svd_only`` (always on ``product_reviews``) adds the arm
    with the score switched off."""
    out = []
    for name in tables:
        df, col = (listing_text(seed), "description") if name == "listing_text" else (product_reviews(seed), "review")
        cfg = FitConfig(seed=seed, progress=False)
        arms = {"fit": _arm(df, cfg)}
        if svd_only or name == "product_reviews":
            with _svd_only():
                arms[f"fit --text {col}, SVD only (before)"] = _arm(df, replace(cfg, text=(col,)))
        arms[f"fit --text {col}"] = _arm(df, replace(cfg, text=(col,)))
        out.append({"benchmark": "text", "table": name, "seed": seed, "rows": len(df),
                    "target_mean": float(df.y.mean()), "arms": arms})
    return out


def bench_dates(seed: int) -> list:
    df = seasonal_dates(seed)
    cfg = FitConfig(seed=seed, progress=False)
    arms = {"fit": _arm(df, cfg), "fit, date column dropped": _arm(df.drop(columns=["sold_on"]), cfg)}
    return [{"benchmark": "dates", "table": "seasonal_dates", "seed": seed, "rows": len(df), "arms": arms}]


def print_runs(runs: list[dict]) -> None:
    for r in runs:
        print(f"\n{r['benchmark']}: {r['table']} ({r['rows']} rows), seed {r['seed']}")
        for arm, a in r["arms"].items():
            members = "  ".join(f"{m} {v:.4f}" for m, v in a["models"].items() if m != "blend")
            print(f"  {arm:28s} {a['metric']} {a['mean']:.4f}  {a['time_s']:7.1f} s   [{members}]")
        s = r.get("selection")
        if s:
            print(f"  selection kept in {s['folds_kept']}/{len(s['kept_per_fold'])} folds; candidates per fold "
                  f"{s['candidates_per_fold']}, dropped {s['dropped_per_fold']}, useful dropped "
                  f"{s.get('useful_dropped_per_fold')}")


def markdown(runs: list[dict]) -> str:
    """One table per (benchmark, table): each arm's mean fold metric and wall time, per seed and averaged."""
    lines: list[str] = []
    for key in dict.fromkeys((r["benchmark"], r["table"]) for r in runs):
        rs = sorted((r for r in runs if (r["benchmark"], r["table"]) == key), key=lambda r: r["seed"])
        metric = next(iter(rs[0]["arms"].values()))["metric"]
        lines += [f"### `{key[0]}`: {key[1]} ({rs[0]['rows']} rows; {metric}, mean of 5 folds, blend)", "",
                  "| arm | " + " | ".join(f"seed {r['seed']}" for r in rs) + " | mean | wall time (s) per seed |",
                  "|---|" + "---|" * len(rs) + "---|---|"]
        for arm in rs[0]["arms"]:
            vals = [r["arms"][arm]["mean"] for r in rs]
            times = ", ".join(f"{r['arms'][arm]['time_s']:.0f}" for r in rs)
            lines.append(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | **{np.mean(vals):.4f}** | {times} |")
        lines.append("")
        if rs[0].get("selection"):
            for r in rs:
                s = r["selection"]
                lines.append(f"- seed {r['seed']}: kept in {s['folds_kept']} of {len(s['kept_per_fold'])} folds; "
                             f"candidates per fold {s['candidates_per_fold']}, dropped {s['dropped_per_fold']}; "
                             f"useful columns among the candidates {s.get('useful_candidates_per_fold')}")
            lines.append("")
    return "\n".join(lines)


BENCHES = {"select": bench_select, "text": bench_text, "dates": bench_dates}

"""Sizing the work to the data and to `--time-budget`: real fits, checked by what each model did."""

import time

import numpy as np
import pandas as pd
from tabular_helpers import fast_config, synthetic

from trainmedic.cli import main
from trainmedic.tabular.fit import fit_table
from trainmedic.tabular.models import GBMConfig, MLPConfig
from trainmedic.tabular.saved import SavedFit


def test_time_budget_stops_the_network_with_its_best_weights():
    """A network whose patience would let it train 5000 epochs stops at its share of an 8 s budget."""
    df = synthetic(1500, "binary", seed=2)
    cfg = fast_config(folds=2, models=("mlp",), time_budget=8.0,
                      mlp=MLPConfig(max_epochs=5000, patience=5000, bags=1))
    t0 = time.perf_counter()
    res = fit_table(df, "y", config=cfg)
    took = time.perf_counter() - t0
    mlp = res.cv["models"]["mlp"]
    assert mlp["budget_stopped"] == [True, True]
    assert all(e[0] < 5000 for e in mlp["epochs"])
    assert mlp["mean"] < 0.69 and mlp["accuracy"]["mean"] > 0.7  # still a trained model (a coin: 0.69, 0.5)
    assert took < 60, took  # 5000 epochs would take far longer; the slack is for a busy machine


def test_time_budget_fits_the_linear_member_on_a_sample_of_large_folds(tmp_path):
    """Under --time-budget the linear member sees at most ``linear_budget_rows`` of a fold's training rows
    (scaled down here: 600 rows, a cap of 150), every class kept; cv.json and the report say so."""
    df = synthetic(600, "multiclass", seed=5)
    rare = df.index[:12]  # a class of 12 rows (8 in a fold's training rows): its share of 150 would be ~3
    df.loc[rare, "y"] = "rare"
    cfg = fast_config(folds=3, models=("lightgbm", "linear"), time_budget=120.0, linear_budget_rows=150)
    res = fit_table(df, "y", out=tmp_path, config=cfg)
    lin = res.cv["models"]["linear"]
    assert lin["train_rows"] == [400, 400, 400]
    assert all(140 <= u <= 175 for u in lin["rows_used"]), lin["rows_used"]
    assert res.cv["linear_budget_sample"]["rows_used"] == lin["rows_used"]
    assert "fitted on a sample" in (tmp_path / "report.html").read_text()
    k = len(res.cv["classes"])
    assert "rare" in res.cv["classes"] and res.oof["linear"].shape == (600, k)  # the rare class has its column
    assert np.all(np.isfinite(res.oof["linear"])) and lin["mean"] < np.log(k)  # better than a uniform guess
    # without a budget the linear member sees every training row, and cv.json says nothing of a sample
    plain = fit_table(df, "y", config=fast_config(folds=3, models=("lightgbm", "linear"), linear_budget_rows=150))
    assert "rows_used" not in plain.cv["models"]["linear"] and plain.cv["linear_budget_sample"] is None


def test_time_budget_shares_go_to_the_models_that_can_stop():
    """Without --search the linear member takes no share of the budget (it cannot stop at one): the network
    gets about half of the models' time in each of 2 folds, not a quarter (which a share per (fold, model)
    of 2 models would give it in the first fold)."""
    df = synthetic(800, "binary", seed=6)
    cfg = fast_config(folds=2, models=("mlp", "linear"), time_budget=16.0,
                      mlp=MLPConfig(max_epochs=5000, patience=5000, bags=1))
    t0 = time.perf_counter()
    res = fit_table(df, "y", config=cfg)
    took = time.perf_counter() - t0
    mlp = res.cv["models"]["mlp"]
    assert mlp["budget_stopped"] == [True, True]
    # 16 s less the fifth kept for importance and writing, less reading and the linear fits: ~6 s a fold
    assert mlp["time_s"][0] > 4.5, mlp["time_s"]
    assert took < 16 * 1.5, took


def test_budget_sample_keeps_every_class():
    from trainmedic.tabular.fit import budget_sample

    y = np.array([0] * 980 + [1] * 15 + [2] * 5)
    rows = np.arange(1000)
    s = budget_sample(rows, y, "multiclass", 100, seed=0)
    assert set(y[s]) == {0, 1, 2} and np.all(np.diff(s) > 0) and 100 <= len(s) <= 120
    assert len(budget_sample(rows, y.astype(float), "regression", 100, seed=0)) == 100
    assert np.array_equal(budget_sample(rows[:50], y, "multiclass", 100, seed=0), rows[:50])  # under the cap


def test_bad_budget_is_one_line(tmp_path, capsys):
    path = tmp_path / "t.csv"
    synthetic(100).to_csv(path, index=False)
    assert main(["fit", str(path), "--target", "y", "--time-budget", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--time-budget" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_large_data_settings_subsample_the_network_and_use_one_boosting_split(tmp_path):
    df = synthetic(1200, "regression", seed=4)
    cfg = fast_config(mlp=MLPConfig(max_epochs=8, patience=3, bags=1, max_rows=300),
                      gbm=GBMConfig(learning_rate=0.1, max_rounds=400, single_split_rows=500, large_early_stopping=10))
    res = fit_table(df.iloc[:1000], "y", test=df.iloc[1000:].drop(columns=["y"]), config=cfg, save=tmp_path / "m")
    models = res.cv["models"]
    assert models["mlp"]["rows_used"] == [300, 300, 300]
    assert all(len(m.boosters) == 1 for m in res_fitted(tmp_path))
    rounds = models["lightgbm"]["rounds"]
    assert all(10 <= r < 400 for r in rounds)  # early stopping on the inner split decided
    assert models["lightgbm"]["mean"] < 0.6 * float(np.std(df["y"]))
    back = SavedFit(tmp_path / "m").predict_frame(df.iloc[1000:].drop(columns=["y"]))
    np.testing.assert_allclose(back["y"], res.submission["y"], rtol=1e-9)


def res_fitted(d):
    return SavedFit(d / "m").models["lightgbm"]


def _noisy_table(seed: int = 0, n: int = 400, noise: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Two useful columns among ``noise`` noise columns, a noisy target: the curve creeps down for long."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, 2 + noise))
    y = A[:, 0] + np.sin(2 * A[:, 1]) + rng.normal(scale=0.8, size=n)
    return A, y


def _cv(A, y, callback, rounds: int = 1500) -> dict:
    import lightgbm as lgb

    from trainmedic.tabular.models import LightGBMModel

    m = LightGBMModel("regression", seed=0)
    params = {**m._params(0, len(y)), "learning_rate": 0.05}
    return lgb.cv(params, lgb.Dataset(A, y, free_raw_data=False), num_boost_round=rounds,
                  folds=m._inner_folds(y, 0), callbacks=[callback] if callback else [])


def test_plateau_stopping_without_a_gain_threshold_is_lightgbm_early_stopping():
    import lightgbm as lgb

    from trainmedic.tabular.models import plateau_stopping

    A, y = _noisy_table()
    ours = _cv(A, y, plateau_stopping(50, 0.0))["valid l2-mean"]
    theirs = _cv(A, y, lgb.early_stopping(50, verbose=False))["valid l2-mean"]
    assert len(ours) == len(theirs) < 1500 and ours == theirs


def test_plateau_stopping_stops_at_the_last_round_that_gained_enough():
    """The rule on a real inner-CV curve: the chosen round beat the best before it by ``min_gain`` of the
    curve's gain so far, and no round in the ``patience`` after it did; it stops earlier than plain early
    stopping on this noisy table, whose curve creeps down by small amounts for hundreds of rounds."""
    from trainmedic.tabular.models import plateau_stopping

    A, y = _noisy_table()
    full = _cv(A, y, None)["valid l2-mean"]  # every round, no stopping
    min_gain, patience = 0.01, 50
    chosen = len(_cv(A, y, plateau_stopping(patience, min_gain))["valid l2-mean"])
    plain = len(_cv(A, y, plateau_stopping(patience, 0.0))["valid l2-mean"])
    assert chosen < plain
    best = full[0]
    counted = [0]  # rounds (0-based) that counted as improvements, walking the full curve
    for i in range(1, chosen + patience):
        if full[i] < best - min_gain * (full[0] - best):
            best = full[i]
            counted.append(i)
    assert counted[-1] == chosen - 1  # the last counted improvement within the window is the chosen round
    assert full[chosen - 1] < min(full[: chosen - 1])  # it is a new best


def test_lightgbm_member_uses_fewer_rounds_with_the_gain_threshold():
    """fit's LightGBM member on a small noisy table: the default threshold (GBMConfig.min_gain) chooses no
    more rounds than LightGBM's plain early stopping (min_gain=0), a larger threshold fewer."""
    from trainmedic.tabular.models import LightGBMModel
    from trainmedic.tabular.preprocess import FeatureFrame

    A, y = _noisy_table(seed=1, n=600)
    df = pd.DataFrame(A, columns=[f"x{i}" for i in range(A.shape[1])])
    ff = FeatureFrame(df, numeric=list(df.columns), categorical=[])
    fits = {}
    for g in (0.0, GBMConfig().min_gain, 0.01):
        cfg = GBMConfig(learning_rate=0.05, min_gain=g)
        fits[g] = LightGBMModel("regression", cfg=cfg, seed=0).fit(ff, y, (np.arange(500), np.arange(500, 600)))
    assert fits[0.01].rounds < fits[0.0].rounds and fits[GBMConfig().min_gain].rounds <= fits[0.0].rounds

"""fit --search (nested Optuna studies), --select (cross-validated feature selection) and --text (free text
kept on request): what each fold's study and selection saw, what cv.json and the report say, and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import fast_config, synthetic

from trainmedic.cli import main
from trainmedic.tabular import search as S
from trainmedic.tabular.fit import fit_table, fold_splits, prepare
from trainmedic.tabular.models import LightGBMModel, LinearModel, MLPModel


class Seen:
    """Records the row labels every model is fitted on or predicts while a study runs (a spy around the real
    methods: the models still train for real)."""

    def __init__(self, monkeypatch):
        self.in_study = False
        self.studies: list[set] = []
        real_study = S.run_study

        def spy_study(*args, **kw):
            self.studies.append(set())
            self.in_study = True
            try:
                return real_study(*args, **kw)
            finally:
                self.in_study = False

        monkeypatch.setattr(S, "run_study", spy_study)
        for cls in (LightGBMModel, LinearModel, MLPModel):
            for meth in ("fit", "predict"):
                monkeypatch.setattr(cls, meth, self._wrap(getattr(cls, meth)))

    def _wrap(self, real):
        def method(model, X, *args, **kw):
            if self.in_study:
                self.studies[-1].update(X.X.index.tolist())
            return real(model, X, *args, **kw)

        return method


def test_search_is_nested_the_study_never_sees_the_outer_validation_rows(monkeypatch):
    df = synthetic(150)
    cfg = fast_config(search=3)
    seen = Seen(monkeypatch)
    res = fit_table(df, "y", config=cfg)
    p = prepare(df, "y", None, cfg)
    folds = fold_splits(p, cfg)
    names = ["mlp", "lightgbm", "linear"]
    assert len(seen.studies) == len(folds) * len(names)  # one study per (fold, model)
    for i, rows in enumerate(seen.studies):
        tr, va = folds[i // len(names)]
        labels_tr, labels_va = set(p.rows[tr].tolist()), set(p.rows[va].tolist())
        assert rows, "the study trained nothing"
        assert rows.isdisjoint(labels_va), f"study {i} saw outer validation rows"
        assert rows <= labels_tr
    assert all(len(res.cv["models"][n]["search"]["per_fold"]) == len(folds) for n in names)


def test_search_reported_in_cv_json_and_report(tmp_path):
    res = fit_table(synthetic(150), "y", out=tmp_path, config=fast_config(search=4, models=("lightgbm", "linear")))
    cv = json.loads((tmp_path / "cv.json").read_text())
    for name in ("lightgbm", "linear"):
        s = cv["models"][name]["search"]
        assert len(s["per_fold"]) == 3
        for f in s["per_fold"]:
            assert 1 <= f["trials"] <= 4 and f["failed_trials"] == 0
            assert f["inner_score"] <= f["default_inner_score"]  # the default is the first trial
            if f["chose_default"]:
                assert f["outer_score"] == f["default_outer_score"]
        # the blend is built from the chosen models: the model's fold scores are the outer scores of the choice
        np.testing.assert_allclose([f["outer_score"] for f in s["per_fold"]], cv["models"][name]["folds"], rtol=1e-5)
        assert s["outer_mean"] == pytest.approx(np.mean(cv["models"][name]["folds"]), rel=1e-5)
    assert cv["config"]["search"] == 4
    changed = [f for f in cv["models"]["lightgbm"]["search"]["per_fold"] if not f["chose_default"]]
    assert changed and set(changed[0]["chosen"]) == {"num_leaves", "min_child_samples", "colsample_bytree",
                                                     "subsample", "reg_lambda"}
    html = (tmp_path / "report.html").read_text()
    assert "Hyper-parameter search" in html and "num_leaves=" in html
    again = fit_table(synthetic(150), "y", config=fast_config(search=4, models=("lightgbm", "linear")))
    assert again.cv["models"]["lightgbm"]["search"]["per_fold"][0]["chosen"] == \
        res.cv["models"]["lightgbm"]["search"]["per_fold"][0]["chosen"]  # seeded TPE


def test_search_time_budget_stops_the_studies():
    res = fit_table(synthetic(150), "y", config=fast_config(search=200, models=("lightgbm",), time_budget=6))
    per_fold = res.cv["models"]["lightgbm"]["search"]["per_fold"]
    assert all(f["timed_out"] and f["trials"] < 200 for f in per_fold)


def noisy(n=400, noise=20, seed=0):
    rng = np.random.default_rng(seed)
    df = synthetic(n, seed=seed)
    for i in range(noise):
        df[f"noise{i}"] = rng.normal(size=n)
    return df


def test_select_drops_pure_noise_and_is_kept_only_when_it_helps(tmp_path):
    res = fit_table(noisy(), "y", out=tmp_path, config=fast_config(select=True, models=("lightgbm", "linear")))
    sel = res.cv["selection"]
    assert len(sel["per_fold"]) == 3
    for f in sel["per_fold"]:
        assert "x1" not in f["candidates"] and "x2" not in f["candidates"]  # the signal is never a candidate
        if f["candidates"]:
            assert f["kept"] == (f["inner_score_selected"] < f["inner_score_all"])
        assert f["dropped"] == (f["candidates"] if f["kept"] else [])
    assert sel["folds_kept"] >= 1
    dropped = set().union(*[f["dropped"] for f in sel["per_fold"]])
    assert dropped and all(c.startswith("noise") for c in dropped)
    assert "Feature selection" in (tmp_path / "report.html").read_text()


def test_select_probe_learns_faster_than_the_fit_but_never_slower():
    """The selection's LightGBM probe ranks columns, it does not score: on small data it takes a faster rate
    and a shorter patience than the fit's model; where the fit's own rate is already higher it keeps that."""
    from trainmedic.tabular.models import GBMConfig
    from trainmedic.tabular.select import PROBE_LEARNING_RATE, probe_config

    small = probe_config(GBMConfig(), 1_000)
    assert small.learning_rate == PROBE_LEARNING_RATE > GBMConfig().rate(1_000)
    assert small.bags == 1 and small.single_split_rows == 0 and small.large_early_stopping < GBMConfig().early_stopping
    assert probe_config(GBMConfig(), 200_000).learning_rate == GBMConfig().rate(200_000) == 0.1
    assert probe_config(GBMConfig(learning_rate=0.3), 1_000).learning_rate == 0.3


def test_select_keeps_every_column_when_none_is_useless():
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    df["y"] = 2 * df.a - 1.5 * df.b + df.c + rng.normal(scale=0.1, size=n)
    res = fit_table(df, "y", config=fast_config(select=True, models=("lightgbm", "linear")))
    for f in res.cv["selection"]["per_fold"]:
        assert f["candidates"] == [] and not f["kept"] and f["dropped"] == []
    assert set(res.cv["importance"]["permutation"]) == {"a", "b", "c"}


GOOD = "lovely bright spacious excellent wonderful".split()
BAD = "dark cramped noisy awful broken".split()
FILL = "the flat has a view of street and garden near station with kitchen".split()


def reviews(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    tone = rng.integers(0, 2, n)
    text = [" ".join(list(rng.choice(FILL, 6)) + list(rng.choice(GOOD if t else BAD, 2))) + f" no {i}"
            for i, t in enumerate(tone)]
    return pd.DataFrame({"x1": x1, "review": text, "y": x1 + 1.5 * tone + rng.normal(scale=0.3, size=n)})


def test_free_text_left_out_by_default_and_used_with_the_flag():
    df = reviews()
    cfg = dict(models=("lightgbm", "linear"))
    plain = fit_table(df, "y", config=fast_config(**cfg)).cv
    assert plain["dropped_columns"]["review"].startswith("free text") and "--text" in plain["dropped_columns"]["review"]
    assert plain["text_columns"] == []
    used = fit_table(df, "y", config=fast_config(text=("review",), **cfg)).cv
    assert "review" not in used["dropped_columns"] and used["text_columns"] == ["review"]
    assert used["importance"]["permutation"]["review"] > 0.1
    assert used["mean"] < 0.8 * plain["mean"]  # the tone of the review is half the signal


def test_text_columns_reach_the_test_predictions():
    from trainmedic.errors import UsageError

    df = reviews(340, seed=1)
    train, test = df.iloc[:300], df.iloc[300:].drop(columns=["y"])
    res = fit_table(train, "y", test=test, config=fast_config(text=("review",), models=("linear",)))
    pred = res.submission["y"].to_numpy()
    tone = df.iloc[300:]["review"].str.contains("|".join(GOOD)).to_numpy()
    assert pred[tone].mean() - pred[~tone].mean() > 0.8  # the test rows' text is encoded as in training
    with pytest.raises(UsageError, match="not a column"):
        fit_table(train, "y", config=fast_config(text=("reveiw",)))


def test_cli_search_select_text_end_to_end(tmp_path, capsys):
    df = reviews(240)
    df["noise"] = np.random.default_rng(5).normal(size=len(df))
    path = tmp_path / "reviews.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "run"
    df.iloc[200:].drop(columns=["y"]).to_csv(tmp_path / "test.csv", index=False)
    code = main(["fit", str(path), "--target", "y", "--fast", "--epochs", "4", "--folds", "3", "--models",
                 "lightgbm,linear", "--search", "2", "--select", "--text", "review", "--out", str(out),
                 "--test", str(tmp_path / "test.csv"), "--save", str(tmp_path / "model")])
    captured = capsys.readouterr()
    assert code == 0
    # the saved models (with the searched settings, each fold's selection and text encoders) give the submission
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "test.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")["y"], pd.read_csv(out / "submission.csv")["y"],
                               rtol=1e-9)
    cv = json.loads((out / "cv.json").read_text())
    assert cv["config"]["search"] == 2 and cv["config"]["select"] is True and cv["text_columns"] == ["review"]
    assert len(cv["models"]["linear"]["search"]["per_fold"]) == 3 and len(cv["selection"]["per_fold"]) == 3
    assert "search (outer mean" in captured.out and "feature selection kept in" in captured.out
    assert "Trial" not in captured.err and "optuna" not in captured.err.lower()  # Optuna's own logging stays quiet
    assert main(["fit", str(path), "--target", "y", "--search", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "--search" in capsys.readouterr().err
    # a numeric column is not free text: one clear line, nothing written
    assert main(["fit", str(path), "--target", "y", "--text", "noise", "--out", str(tmp_path / "num")]) == 2
    err = capsys.readouterr().err
    assert "--text 'noise' holds numbers" in err and err.count("\n") == 1 and not (tmp_path / "num").exists()


def test_check_data_and_fit_flag_the_same_free_text_column():
    from trainmedic.tabular.checks import check_frame

    df = reviews()
    tm116 = [f for f in check_frame(df, target="y") if f.code == "TM118"]
    assert len(tm116) == 1 and set(tm116[0].evidence["columns"]) == {"review"} and tm116[0].severity == "info"
    res = fit_table(df, "y", config=fast_config(models=("linear",)))
    assert [f.evidence["columns"].keys() for f in res.findings if f.code == "TM118"] == [{"review": 0}.keys()]
    assert set(res.cv["dropped_columns"]) == {"review"}


def test_searched_and_selected_models_round_trip_through_save_and_predict(tmp_path):
    from trainmedic.tabular.saved import SavedFit

    df = noisy(360, noise=12, seed=2)
    train, test = df.iloc[:320], df.iloc[320:].drop(columns=["y"])
    res = fit_table(train, "y", test=test, save=tmp_path / "m",
                    config=fast_config(search=3, select=True))
    assert res.cv["selection"]["folds_kept"] >= 1  # some fold's models were fitted on fewer columns
    back = SavedFit(tmp_path / "m").predict_frame(test)
    np.testing.assert_allclose(back["y"], res.submission["y"], rtol=1e-6)

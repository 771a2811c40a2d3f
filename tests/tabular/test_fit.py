"""fit end to end on small data: the documented files and schemas, every task kind, reproducibility."""

import json

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import fast_config, synthetic

from trainmedic import datasets
from trainmedic.tabular.fit import fit_table
from trainmedic.tabular.models import MLPConfig, _make_medic

CV_KEYS = {"metric", "folds", "mean", "std", "models"}


def check_cv(cv, n_folds, metric):
    assert CV_KEYS <= set(cv)
    assert cv["metric"] == metric
    assert len(cv["folds"]) == n_folds and np.isclose(cv["mean"], np.mean(cv["folds"]))
    assert np.isclose(cv["std"], np.std(cv["folds"]))
    for name in ("mlp", "lightgbm", "linear", "blend"):
        m = cv["models"][name]
        assert len(m["folds"]) == n_folds and np.isfinite(m["mean"])
    assert cv["models"]["blend"]["folds"] == cv["folds"]


def test_house_fit_writes_documented_files(tmp_path, house_small_csv):
    train, test = house_small_csv
    out = tmp_path / "run"
    res = fit_table(train, "SalePrice", test=test, out=out, config=fast_config())
    cv = json.loads((out / "cv.json").read_text())
    check_cv(cv, 3, "log_rmse")
    assert cv["task"] == "log-regression" and cv["rows"] == 240
    assert cv["mean"] < 0.4  # a sane fit even with 6 epochs and 40 boosting rounds
    w = cv["blend_weights"]["point"]
    assert set(w) == {"mlp", "lightgbm", "linear"} and sum(w.values()) == pytest.approx(1, abs=1e-6)
    assert "Id" in cv["dropped_columns"]
    doc = json.loads((out / "findings.json").read_text())
    assert doc["version"] == 1
    got = {f["code"] for f in doc["findings"]}
    assert {"TM112", "TM113", "TM115"} <= got
    for f in doc["findings"]:
        assert set(f) == {"code", "name", "severity", "step", "epoch", "message", "evidence", "action"}
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["Id", "SalePrice"] and len(sub) == 40
    assert sub["Id"].tolist() == list(range(241, 281))
    assert (sub["SalePrice"] > 10_000).all() and (sub["SalePrice"] < 2_000_000).all()
    html = (out / "report.html").read_text()
    assert "log_rmse" in html and "TM115" in html and "<script" not in html
    assert res.submission is not None and not list(out.glob(".*.tmp"))


def test_count_fit_on_doctor_visits_subset(tmp_path):
    df = pd.read_csv(datasets.doctor_visits()).iloc[:900]
    res = fit_table(df, "visits", out=tmp_path / "dv", config=fast_config())
    cv = res.cv
    check_cv(cv, 3, "poisson_deviance")
    assert cv["task"] == "count"
    assert "nll" in cv and len(cv["nll"]["folds"]) == 3
    for name in ("mlp", "lightgbm", "linear", "blend"):
        assert 0.2 < cv["models"][name]["nll"]["mean"] < 1.5
    assert set(cv["blend_weights"]) == {"mean", "distribution"}
    assert cv["models"]["blend"]["mean"] < 1.087  # better than the constant (full-data reference)


@pytest.mark.parametrize("kind, metric", [("binary", "log_loss"), ("multiclass", "log_loss"),
                                          ("regression", "rmse")])
def test_other_task_kinds(tmp_path, kind, metric):
    df = synthetic(240, kind)
    test = synthetic(30, kind, seed=5).drop(columns=["y"])
    res = fit_table(df, "y", test=test, out=tmp_path / kind, config=fast_config())
    check_cv(res.cv, 3, metric)
    assert res.cv["task"] == kind
    sub = pd.read_csv(tmp_path / kind / "submission.csv")
    assert len(sub) == 30 and list(sub.columns) == ["id", "y"]
    if kind != "regression":
        assert "accuracy" in res.cv and set(sub["y"]) <= set(df["y"])
        assert res.cv["accuracy"]["mean"] > 0.5


def test_reproducible_with_a_seed():
    df = synthetic(200, "regression")
    a = fit_table(df, "y", config=fast_config(seed=3)).cv
    b = fit_table(df, "y", config=fast_config(seed=3)).cv
    for name in ("mlp", "lightgbm", "linear", "blend"):
        assert a["models"][name]["folds"] == b["models"][name]["folds"]
    c = fit_table(df, "y", config=fast_config(seed=4)).cv
    assert c["models"]["lightgbm"]["folds"] != a["models"]["lightgbm"]["folds"]


def test_task_override_and_model_subset():
    df = synthetic(200, "count")
    res = fit_table(df, "y", config=fast_config(task="regression", models=("linear",)))
    assert res.cv["task"] == "regression" and set(res.cv["models"]) == {"linear", "blend"}


def test_mlp_trains_under_medic_heal():
    import torch

    from trainmedic import Medic

    net = torch.nn.Linear(3, 1)
    medic = _make_medic(net, torch.optim.SGD(net.parameters(), lr=0.1), MLPConfig(patience=10))
    assert isinstance(medic, Medic) and medic.mode == "heal"


def test_report_escapes_column_names(tmp_path):
    df = synthetic(120, "regression").rename(columns={"cat": "<script>alert(1)</script>"})
    df["<b>const</b>"] = 1
    fit_table(df, "y", out=tmp_path / "esc", config=fast_config(models=("linear",)))
    html = (tmp_path / "esc" / "report.html").read_text()
    assert "<script>" not in html and "&lt;b&gt;const&lt;/b&gt;" in html

"""Columns read like a person reads them: dates become parts, free text is left out, a unique whole-number
measurement is a feature and not an identifier, and `check-data` and `fit` agree on all of it."""

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import fast_config

from trainmedic.tabular.checks import check_frame
from trainmedic.tabular.fit import fit_table
from trainmedic.tabular.preprocess import column_role
from trainmedic.tabular.saved import SavedFit

WORDS = "the house was quiet and warm with a garden facing south near the old station".split()


def people(n=240, seed=0):
    rng = np.random.default_rng(seed)
    signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1400, n), unit="D")
    income = rng.choice(np.arange(20_000, 200_000), size=n, replace=False)  # unique whole numbers
    x1 = rng.normal(size=n)
    summer = signup.month.isin([6, 7, 8]).astype(float)
    df = pd.DataFrame({
        "customer": [f"C{i:05d}" for i in rng.permutation(n)],
        "order_number": 1000 + rng.permutation(n),  # consecutive whole numbers: an identifier
        "income": income,
        "signup": signup.strftime("%Y-%m-%d"),
        "review": [" ".join(rng.choice(WORDS, 8)) + f" #{i}" for i in range(n)],
        "x1": x1,
    })
    df["y"] = x1 + income / 50_000 + 1.5 * summer + rng.normal(scale=0.2, size=n)
    return df


def test_roles():
    df = people()
    roles = {c: column_role(df[c], c, len(df)) for c in df.columns if c != "y"}
    assert roles == {"customer": "identifier", "order_number": "identifier", "income": None, "signup": "date",
                     "review": "free text", "x1": None}


def test_check_data_and_fit_agree(tmp_path):
    df = people()
    path = tmp_path / "people.csv"
    df.to_csv(path, index=False)
    found = check_frame(pd.read_csv(path), target="y")
    tm106 = [f for f in found if f.code == "TM106"]
    assert len(tm106) == 1 and set(tm106[0].evidence["columns"]) == {"customer", "order_number"}
    res = fit_table(str(path), "y", config=fast_config(models=("lightgbm", "linear")))
    dropped = res.cv["dropped_columns"]
    assert dropped["customer"].startswith("identifier") and dropped["order_number"].startswith("identifier")
    assert dropped["review"].startswith("free text") and "income" not in dropped and "signup" not in dropped
    assert res.cv["features"] == {"numeric": 6, "categorical": 0}  # x1, income, signup: year, month, weekday, days
    perm = res.cv["importance"]["permutation"]
    assert set(perm) == {"x1", "income", "signup_year", "signup_month", "signup_dayofweek", "signup_days"}
    assert perm["signup_month"] > perm["signup_dayofweek"]  # the summer effect is found in the month


def test_dates_round_trip_through_save_and_predict(tmp_path):
    df = people(300, seed=1)
    train, test = df.iloc[:240], df.iloc[240:].drop(columns=["y"])
    res = fit_table(train, "y", test=test, config=fast_config(models=("lightgbm", "linear")), save=tmp_path / "m")
    saved = SavedFit(tmp_path / "m")
    back = saved.predict_frame(test)
    assert back.columns.tolist() == ["order_number", "y"]  # the id named like one
    np.testing.assert_allclose(back["y"], res.submission["y"], rtol=1e-9)
    with pytest.raises(ValueError, match="were dates in training"):
        saved.predict_frame(test.assign(signup="soon"))

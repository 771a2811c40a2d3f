"""Each data rule fires on a small crafted frame, stays quiet on a clean one, and fires on the real data."""

import numpy as np
import pandas as pd
import pytest

from trainmedic import datasets
from trainmedic.tabular.checks import check_data, check_frame
from trainmedic.tabular.io import ReadReport


def codes(findings):
    return {f.code for f in findings}


def by_code(findings, code):
    return next(f for f in findings if f.code == code)


def clean(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], size=n),
        "y": rng.normal(size=n),
    })


def test_clean_frame_only_small_data():
    assert codes(check_frame(clean(), target="y")) == {"TM113"}


def test_tm101_nonfinite_features():
    df = clean()
    df.loc[3, "a"] = np.nan
    df.loc[4, "b"] = np.inf
    df["c"] = df["c"].astype(object)
    df.loc[5, "c"] = ""
    f = by_code(check_frame(df, target="y"), "TM101")
    assert f.evidence["columns"]["a"]["missing"] == 1
    assert f.evidence["columns"]["b"]["inf"] == 1
    assert f.evidence["columns"]["c"]["empty_string"] == 1
    assert f.evidence["rows_affected"] == 3


def test_tm102_bad_target():
    df = clean()
    df.loc[[1, 2], "y"] = np.nan
    df.loc[7, "y"] = np.inf
    f = by_code(check_frame(df, target="y"), "TM102")
    assert f.severity == "error"
    assert f.evidence["missing"] == 2 and f.evidence["non_finite"] == 1


def test_tm102_single_class_target():
    df = clean()
    df["y"] = 3.0
    assert "TM102" in codes(check_frame(df, target="y"))


def test_tm103_numbers_as_text():
    df = clean(100)
    vals = [f"{i:,}" for i in range(1000, 1000 + 100 * 97, 97)]
    vals[0] = "?"
    df["amount"] = pd.Series(vals, dtype="str")
    f = by_code(check_frame(df, target="y"), "TM103")
    assert "amount" in f.evidence["columns"]
    assert "?" in f.evidence["columns"]["amount"]["not_numbers"]


def test_tm103_info_for_columns_converted_on_read():
    rep = ReadReport(source="x.csv", converted={"a": {"reason": "thousands separator ','", "examples": ["1,234"]}})
    f = by_code(check_frame(clean(), target="y", report=rep), "TM103")
    assert f.severity == "info"


def test_tm104_index_column():
    df = clean()
    df.insert(0, "Unnamed: 0", np.arange(len(df)))
    df["rownum"] = np.arange(1, len(df) + 1)
    f = by_code(check_frame(df, target="y"), "TM104")
    assert set(f.evidence["columns"]) == {"Unnamed: 0", "rownum"}
    assert "TM106" not in codes(check_frame(df, target="y"))


def test_tm105_useless_column():
    df = clean()
    df["const"] = 7
    df["empty"] = np.nan
    f = by_code(check_frame(df, target="y"), "TM105")
    assert f.evidence["constant"] == {"const": 7}
    assert f.evidence["all_missing"] == ["empty"]


def test_tm106_id_like_column():
    df = clean()
    df["customer"] = [f"C{i:05d}" for i in np.random.default_rng(1).permutation(len(df))]
    f = by_code(check_frame(df, target="y"), "TM106")
    assert "customer" in f.evidence["columns"]


def test_tm107_duplicates_and_conflicting_labels():
    df = clean(50)
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)  # 3 exact duplicates
    extra = df.iloc[[10]].copy()
    extra["y"] = 99.0
    df = pd.concat([df, extra], ignore_index=True)  # same features, another label
    f = by_code(check_frame(df, target="y"), "TM107")
    assert f.evidence["duplicate_rows"] == 3
    assert f.evidence["conflicting_label_groups"] == 1


def test_tm108_unscaled_features():
    df = clean()
    df["area"] = df["a"] * 1e5 + 5e6
    f = by_code(check_frame(df, target="y"), "TM108")
    assert "area" in f.evidence["largest"]
    assert "area" in f.evidence["off_center"]


def test_tm109_outliers():
    df = clean()
    df.loc[17, "a"] = 1e3
    f = by_code(check_frame(df, target="y"), "TM109")
    assert f.evidence["columns"]["a"]["examples"][0]["row"] == 17


def test_tm110_class_imbalance():
    df = clean(300)
    df["y"] = np.where(np.arange(300) < 10, "rare", "common")
    f = by_code(check_frame(df, target="y"), "TM110")
    assert f.evidence["counts"] == {"common": 290, "rare": 10}


def test_tm111_sparse_count_target():
    rng = np.random.default_rng(0)
    df = clean(300)
    df["y"] = rng.poisson(0.3, size=300)
    found = codes(check_frame(df, target="y"))
    assert "TM111" in found and "TM112" not in found


def test_tm112_skewed_positive_target():
    rng = np.random.default_rng(0)
    df = clean(300)
    df["y"] = np.exp(rng.normal(11, 0.8, size=300)).round(2)
    f = by_code(check_frame(df, target="y"), "TM112")
    assert f.evidence["skew"] > 1


def test_tm113_small_data_threshold():
    assert "TM113" in codes(check_frame(clean(50)))
    big = clean(10_000)
    assert "TM113" not in codes(check_frame(big))


def test_tm114_train_test_mismatch():
    tr = clean()
    te = clean(50, seed=1).drop(columns=["y", "b"])
    te["c"] = te["c"].replace({"x": "new"})
    f = by_code(check_frame(tr, target="y", test=te), "TM114")
    assert f.severity == "error"
    assert f.evidence["missing_in_test"] == ["b"]
    assert f.evidence["unseen_categories"]["c"]["unseen"] == ["new"]
    # only new categories: a warning
    te2 = clean(50, seed=1).drop(columns=["y"])
    te2["c"] = te2["c"].replace({"x": "new"})
    assert by_code(check_frame(tr, target="y", test=te2), "TM114").severity == "warning"


def test_tm115_missing_means_none(tmp_path):
    p = tmp_path / "n.csv"
    rows = ["kind,v,y"] + [f"{'None' if i % 2 else 'Brick'},{i},{i * 1.5}" for i in range(40)]
    p.write_text("\n".join(rows) + "\n")
    f = by_code(check_data(p, target="y"), "TM115")
    assert f.evidence["columns"]["kind"]["train"] == {"None": 20}


def test_detector_failure_becomes_tm901(monkeypatch):
    from trainmedic.tabular import checks

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(checks, "DETECTORS", (broken,))
    (f,) = check_frame(clean(), target="y")
    assert f.code == "TM901" and "boom" in f.message


# ---- the real data ------------------------------------------------------------------------------------
def test_house_prices_findings():
    found = check_data(datasets.house_prices_train(), target="SalePrice", test=datasets.house_prices_test())
    c = codes(found)
    assert {"TM101", "TM106", "TM109", "TM112", "TM113", "TM115"} <= c
    assert not any(f.severity == "error" for f in found)
    tm115 = by_code(found, "TM115")
    assert tm115.evidence["columns"]["MasVnrType"]["train"]["None"] == 864
    assert list(tm115.evidence["columns"])[0] == "MasVnrType"  # the "None" category comes first
    assert by_code(found, "TM106").evidence["columns"].keys() == {"Id"}
    assert "SalePrice" in by_code(found, "TM109").evidence["columns"]
    assert by_code(found, "TM114").severity == "warning"  # only unseen categories


def test_doctor_visits_findings():
    found = check_data(datasets.doctor_visits(), target="visits")
    c = codes(found)
    assert {"TM111", "TM113"} <= c and "TM112" not in c
    f = by_code(found, "TM111")
    assert f.evidence["zero_fraction"] == pytest.approx(4141 / 5190)

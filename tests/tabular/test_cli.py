"""The command line: exit codes, one-line errors without traceback, nothing half-written on bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import synthetic

from trainmedic.cli import main

FAST = ["--fast", "--epochs", "4", "--folds", "3", "--quiet"]


def write(tmp_path, name, df):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trainmedic: error: ") and "Traceback" not in err
    return lines[0]


# ---- check-data -----------------------------------------------------------------------------------------
def test_check_data_exit_0_on_clean_data(tmp_path, capsys):
    p = write(tmp_path, "ok.csv", synthetic(100))
    code, out, _ = run(["check-data", p, "--target", "y"], capsys)
    assert code == 0 and "TM113" in out


def test_check_data_exit_1_on_error_finding_and_json(tmp_path, capsys):
    df = synthetic(100)
    df.loc[:4, "y"] = np.nan
    p = write(tmp_path, "bad.csv", df)
    code, out, _ = run(["check-data", p, "--target", "y", "--json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["version"] == 1 and "TM102" in {f["code"] for f in doc["findings"]}


def test_check_data_test_file_mismatch_is_a_finding(tmp_path, capsys):
    tr = write(tmp_path, "tr.csv", synthetic(100))
    te = write(tmp_path, "te.csv", synthetic(20).drop(columns=["x2", "y"]))
    code, out, _ = run(["check-data", tr, "--target", "y", "--test", te, "--json"], capsys)
    assert code == 1 and "TM114" in out


@pytest.mark.parametrize("case", ["missing", "empty", "unknown_target"])
def test_check_data_exit_2(tmp_path, capsys, case):
    p = tmp_path / "x.csv"
    if case == "empty":
        p.write_text("")
    elif case == "unknown_target":
        synthetic(50).to_csv(p, index=False)
    argv = ["check-data", str(p if case != "missing" else tmp_path / "nope.csv")]
    if case == "unknown_target":
        argv += ["--target", "yy"]
    code, _, err = run(argv, capsys)
    assert code == 2
    line = one_line_error(err)
    if case == "unknown_target":
        assert "did you mean 'y'" in line


# ---- fit: bad input -----------------------------------------------------------------------------------------
def bad_input(tmp_path, case):
    df = synthetic(120)
    extra = []
    if case == "unknown target":
        return [write(tmp_path, "t.csv", df), "--target", "price"], "not found"
    if case == "empty file":
        (tmp_path / "e.csv").write_text("")
        return [str(tmp_path / "e.csv"), "--target", "y"], "empty"
    if case == "header only":
        (tmp_path / "h.csv").write_text("a,b,y\n")
        return [str(tmp_path / "h.csv"), "--target", "y"], "no data rows"
    if case == "text target for regression":
        df["y"] = np.where(df["y"] > 0, "high", "low")
        return [write(tmp_path, "t.csv", df), "--target", "y", "--task", "regression"], "numeric target"
    if case == "one class":
        df["y"] = "same"
        return [write(tmp_path, "t.csv", df), "--target", "y"], "single"
    if case == "test with other columns":
        te = synthetic(20).drop(columns=["y"]).rename(columns={"x2": "x3"})
        extra = ["--test", write(tmp_path, "te.csv", te)]
        return [write(tmp_path, "t.csv", df), "--target", "y", *extra], "different columns"
    if case == "missing test file":
        return [write(tmp_path, "t.csv", df), "--target", "y", "--test", str(tmp_path / "no.csv")], "no such file"
    if case == "too few rows":
        return [write(tmp_path, "t.csv", df.iloc[:5]), "--target", "y"], "only 5 rows"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["unknown target", "empty file", "header only", "text target for regression",
                                  "one class", "test with other columns", "missing test file", "too few rows"])
def test_fit_bad_input_exit_2_and_nothing_written(tmp_path, capsys, case):
    argv, expect = bad_input(tmp_path, case)
    out = tmp_path / "out"
    code, _, err = run(["fit", *argv, "--out", str(out), *FAST], capsys)
    assert code == 2
    assert expect in one_line_error(err)
    assert not out.exists()


def test_fit_bad_input_leaves_an_existing_out_dir_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cv.json").write_text('{"old": true}')
    argv, _ = bad_input(tmp_path, "one class")
    assert run(["fit", *argv, "--out", str(out), *FAST], capsys)[0] == 2
    assert json.loads((out / "cv.json").read_text()) == {"old": True}
    assert [p.name for p in out.iterdir()] == ["cv.json"]


def test_fit_all_missing_column_is_a_finding_not_an_error(tmp_path, capsys):
    df = synthetic(120)
    df["empty"] = np.nan
    out = tmp_path / "out"
    code, stdout, _ = run(["fit", write(tmp_path, "t.csv", df), "--target", "y", "--out", str(out), *FAST,
                           "--json"], capsys)
    assert code == 0
    cv = json.loads(stdout)
    assert cv["dropped_columns"]["empty"] == "entirely missing"
    findings = json.loads((out / "findings.json").read_text())["findings"]
    assert "TM105" in {f["code"] for f in findings}
    assert {p.name for p in out.iterdir()} == {"cv.json", "findings.json", "report.html", "oof.json"}


def test_fit_cli_with_test_writes_submission(tmp_path, capsys, house_small_csv):
    train, test = house_small_csv
    out = tmp_path / "house"
    code, stdout, _ = run(["fit", train, "--target", "SalePrice", "--test", test, "--out", str(out), *FAST,
                           "--models", "linear,lightgbm"], capsys)
    assert code == 0 and "log_rmse" in stdout
    sub = pd.read_csv(out / "submission.csv")
    assert list(sub.columns) == ["Id", "SalePrice"] and len(sub) == 40


def test_fit_unknown_model_and_bad_folds(tmp_path, capsys):
    p = write(tmp_path, "t.csv", synthetic(60))
    code, _, err = run(["fit", p, "--target", "y", "--models", "xgb", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown model" in one_line_error(err)
    code, _, err = run(["fit", p, "--target", "y", "--folds", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--folds" in one_line_error(err)

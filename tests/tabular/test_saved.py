"""`fit --save DIR` and `trainmedic predict DIR data.csv`: round trips, column checks, damaged files."""

import hashlib
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import fast_config, synthetic

from trainmedic.cli import main
from trainmedic.tabular.fit import fit_table, fold_splits, prepare
from trainmedic.tabular.models import MLPConfig
from trainmedic.tabular.saved import SavedFit

ALL = ("mlp", "lightgbm", "linear")


def one_line_error(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trainmedic: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def house_saved(tmp_path_factory, house_small_csv):
    """A real fit of 240 house rows with all three models (two bagged networks), its test predictions
    and the saved models."""
    train, test = house_small_csv
    d = tmp_path_factory.mktemp("saved")
    cfg = fast_config(mlp=MLPConfig(max_epochs=6, patience=3, bags=2))
    res = fit_table(train, "SalePrice", test=test, out=d / "out", config=cfg, save=d / "model")
    return train, test, d, res, cfg


def test_predict_reproduces_the_fit_submission(house_saved, capsys):
    train, test, d, res, _ = house_saved
    assert sorted(p.name for p in (d / "model").iterdir()) == sorted(
        ["model.json"] + [f"lightgbm-fold{k}-bag0.txt" for k in range(3)] + [f"mlp-fold{k}.pt" for k in range(3)])
    code = main(["predict", str(d / "model"), test, "--out", str(d / "preds.csv")])
    assert code == 0 and "40 predictions" in capsys.readouterr().err
    preds = pd.read_csv(d / "preds.csv")
    sub = pd.read_csv(d / "out" / "submission.csv")
    assert list(preds.columns) == ["Id", "SalePrice"] and preds["Id"].tolist() == sub["Id"].tolist()
    np.testing.assert_allclose(preds["SalePrice"], sub["SalePrice"], rtol=1e-9)
    np.testing.assert_allclose(preds["SalePrice"], res.submission["SalePrice"], rtol=1e-9)


def test_each_saved_fold_model_reproduces_its_out_of_fold_predictions(house_saved):
    train, _, d, res, cfg = house_saved
    p = prepare(train, "SalePrice", config=cfg)
    saved = SavedFit(d / "model")
    df = pd.read_csv(train, keep_default_na=False, dtype=str)  # the raw text, read again as predict reads it
    X = saved.features(p.df.iloc[p.rows], "train")
    assert len(df) == len(p.df)
    for k, (_, va) in enumerate(fold_splits(p, cfg)):
        Xva = type(X)(X.X.iloc[va], X.numeric, X.categorical)
        for name in ALL:
            np.testing.assert_allclose(saved.predict_model(name, Xva, k), res.oof[name][va], rtol=1e-9, atol=1e-12)
    # the linear model kept its pair products in some fold and has splines and target means in every fold,
    # so their stored forms are part of the check
    assert any(m.pairs is not None for m in saved.models["linear"])
    assert all(m.splines is not None and len(m.splines.columns) > 10 for m in saved.models["linear"])
    assert all(m.target_means is not None for m in saved.models["linear"])
    manifest = json.loads((d / "model" / "model.json").read_text())
    assert all(len(e["splines"]["knots"]) == len(e["splines"]["columns"]) for e in manifest["models"]["linear"])


@pytest.mark.parametrize("kind", ["binary", "multiclass", "count"])
def test_round_trip_other_tasks(tmp_path, kind):
    df = synthetic(240, kind, seed=3)
    train, test = df.iloc[:200], df.iloc[200:].drop(columns=["y"])
    res = fit_table(train, "y", test=test, config=fast_config(), save=tmp_path / "m")
    back = SavedFit(tmp_path / "m").predict_frame(test)
    assert len(back) == 40
    if kind == "count":
        np.testing.assert_allclose(back["y"], res.submission["y"], rtol=1e-9)
        assert (back["y"] > 0).all()
    else:
        assert back["y"].tolist() == res.submission["y"].tolist()
        assert set(back["y"]) <= set(train["y"])


def test_column_mismatch_is_one_line(house_saved, tmp_path, capsys):
    _, test, d, _, _ = house_saved
    df = pd.read_csv(test, keep_default_na=False, dtype=str)
    df.drop(columns=["LotArea"]).assign(Extra=1).to_csv(tmp_path / "bad.csv", index=False)
    code = main(["predict", str(d / "model"), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "p.csv")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "TM114" in line and "'LotArea'" in line and "'Extra'" in line
    assert not (tmp_path / "p.csv").exists()
    df.assign(LotArea="large").to_csv(tmp_path / "text.csv", index=False)
    code = main(["predict", str(d / "model"), str(tmp_path / "text.csv"), "--out", str(tmp_path / "p.csv")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "'LotArea'" in line and "text here" in line


def _copy(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize("damage", ["truncated booster", "bad json", "missing file", "not a model dir"])
def test_corrupt_saved_model_is_one_line(house_saved, tmp_path, capsys, damage):
    _, test, d, _, _ = house_saved
    m = _copy(d / "model", tmp_path / "m")
    if damage == "truncated booster":
        b = m / "lightgbm-fold1-bag0.txt"
        b.write_bytes(b.read_bytes()[: len(b.read_bytes()) // 2])
        expect = "damaged"
    elif damage == "bad json":
        (m / "model.json").write_text((m / "model.json").read_text()[:-200])
        expect = "cannot be loaded"
    elif damage == "missing file":
        (m / "mlp-fold2.pt").unlink()
        expect = "missing"
    else:
        for p in m.iterdir():
            p.unlink()
        expect = "no model.json"
    code = main(["predict", str(m), test, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and expect in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "p.csv").exists()


class _Evil:
    def __reduce__(self):
        import os

        return (os.mkdir, (EVIL_DIR,))


EVIL_DIR = ""


def test_a_saved_file_that_would_run_code_is_refused(house_saved, tmp_path, capsys):
    """Even with a matching checksum, a pickle that runs code is refused by torch.load(weights_only=True)."""
    global EVIL_DIR
    _, test, d, _, _ = house_saved
    m = _copy(d / "model", tmp_path / "m")
    EVIL_DIR = str(tmp_path / "pwned")
    payload = pickle.dumps({"bag0": _Evil()}, protocol=2)
    (m / "mlp-fold0.pt").write_bytes(payload)
    manifest = json.loads((m / "model.json").read_text())
    manifest["sha256"]["mlp-fold0.pt"] = hashlib.sha256(payload).hexdigest()
    (m / "model.json").write_text(json.dumps(manifest))
    code = main(["predict", str(m), test, "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "cannot be loaded" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "pwned").exists()


def test_save_refuses_a_folder_of_other_files(tmp_path, capsys):
    train = tmp_path / "t.csv"
    synthetic(120).to_csv(train, index=False)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    code = main(["fit", str(train), "--target", "y", "--save", str(other), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2 and "other files" in one_line_error(capsys.readouterr().err)
    assert [p.name for p in other.iterdir()] == ["cat.jpg"] and not (tmp_path / "o").exists()

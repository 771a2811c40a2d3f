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


# ---- free-text columns (fit --text) ---------------------------------------------------------------------
GOOD = "lovely bright spacious excellent wonderful".split()
BAD = "dark cramped noisy awful broken".split()
FILL = "the flat has a view of street and garden near station with kitchen café über straße".split()


def reviews(n, seed=0):
    """A number, a category and a review whose tone is half the signal; some reviews are missing."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    tone = rng.integers(0, 2, n)
    text = [" ".join(list(rng.choice(FILL, 6)) + list(rng.choice(GOOD if t else BAD, 2))) for t in tone]
    df = pd.DataFrame({"x1": x1, "cat": rng.choice(["a", "b"], n), "review": text,
                       "y": x1 + 1.5 * tone + rng.normal(scale=0.3, size=n)})
    df.loc[rng.choice(n, n // 20, replace=False), "review"] = ""
    return df


@pytest.fixture(scope="module")
def text_saved(tmp_path_factory):
    """A real fit of all three models with a `--text` column, saved, and its test predictions; the test rows
    include reviews with words never seen in training, an empty one, and one in capitals."""
    d = tmp_path_factory.mktemp("text")
    df = reviews(260, seed=4)
    train, test = df.iloc[:220], df.iloc[220:].drop(columns=["y"]).copy()
    test.iloc[0, test.columns.get_loc("review")] = "SPACIOUS Lovely penthouse, brand-new roof terrace, CAFÉ"
    test.iloc[1, test.columns.get_loc("review")] = ""
    test.iloc[2, test.columns.get_loc("review")] = "zzz qqq"
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    cfg = fast_config(text=("review",))
    res = fit_table(str(d / "train.csv"), "y", test=str(d / "test.csv"), out=d / "out", config=cfg,
                    save=d / "model")
    return d, res, cfg


def test_predict_with_a_text_column_reproduces_the_fit_submission(text_saved, capsys):
    d, res, _ = text_saved
    code = main(["predict", str(d / "model"), str(d / "test.csv"), "--out", str(d / "preds.csv")])
    assert code == 0 and "40 predictions" in capsys.readouterr().err
    preds = pd.read_csv(d / "preds.csv")
    sub = pd.read_csv(d / "out" / "submission.csv")
    np.testing.assert_allclose(preds["y"], sub["y"], rtol=1e-9)
    np.testing.assert_allclose(preds["y"], res.submission["y"], rtol=1e-9)
    tone = pd.read_csv(d / "test.csv", keep_default_na=False)["review"].str.contains("|".join(GOOD)).to_numpy()
    assert preds["y"][tone].mean() - preds["y"][~tone].mean() > 0.8  # the saved encoder carries the text's signal


def test_saved_text_encoder_holds_no_pickle(text_saved):
    """Every saved file is JSON, LightGBM text, a weights-only torch archive, or a plain float .npy. Models whose
    encoders were fitted on the same rows share one stored copy (the network and the linear model leave out the
    same extreme targets, LightGBM none, so 3 folds x 3 models need 3 to 6 encoders, not 9)."""
    d, _, _ = text_saved
    files = sorted(p.name for p in (d / "model").iterdir())
    manifest = json.loads((d / "model" / "model.json").read_text())
    used = {p["encoder"] for es in manifest["models"].values() for e in es for p in e["pre"]["parts"]
            if p["kind"] == "text"}
    assert 3 <= len(used) <= 6 and sorted(f for f in files if f.startswith("text-")) == sorted(
        [f"{u}.json" for u in used] + [f"{u}.npy" for u in used] + [f"{u}-score.npy" for u in used])
    for f in files:
        raw = (d / "model" / f).read_bytes()
        assert not raw.startswith(b"\x80"), f  # a bare pickle stream
        if f.endswith(".json"):
            json.loads(raw)
        elif f.endswith(".npy"):
            assert raw.startswith(b"\x93NUMPY")
            a = np.load(d / "model" / f, allow_pickle=False)
            assert a.dtype == np.float64 and a.ndim == 2
        elif f.endswith(".pt"):
            assert raw.startswith(b"PK")  # torch's zip archive, read with weights_only=True
        else:
            assert f.endswith(".txt") and raw.startswith(b"tree"), f
    assert manifest["text"] == ["review"]
    part = next(p for p in manifest["models"]["linear"][0]["pre"]["parts"] if p["kind"] == "text")
    assert part["settings"]["ngram_range"] == [1, 2] and part["settings"]["sublinear_tf"] is True
    assert part["settings"]["lowercase"] is True and part["settings"]["norm"] == "l2"


def test_saved_text_encoder_gives_the_fitted_features(text_saved):
    """Each fold's stored preprocessing (with its rebuilt TF-IDF and SVD) gives the fitted transformer's matrix on
    the training rows and on unseen text."""
    from trainmedic.tabular.fit import cross_validate

    d, _, cfg = text_saved
    p = prepare(str(d / "train.csv"), "y", str(d / "test.csv"), cfg)
    res = cross_validate(p, cfg, None)
    from trainmedic.tabular.saved import save_fit

    save_fit(d / "again", p, res)
    saved = SavedFit(d / "again")
    test = saved.features(pd.read_csv(d / "test.csv"), "test")
    train = saved.features(p.df.iloc[p.rows], "train")
    for name in ALL:
        for k, fitted in enumerate(res["fitted"][name]):
            assert any(part["kind"] == "text" for part in saved.models[name][k].pre.spec["parts"])
            for X in (train, test):
                np.testing.assert_allclose(saved.models[name][k].pre.transform(X.X), fitted.pre.transform(X.X),
                                           rtol=1e-10, atol=1e-12)


def test_text_column_without_words_is_a_zero_column():
    """A text column with no word of two letters: the encoder gives one column of zeros, and so does its frozen
    form (which then needs no stored vocabulary)."""
    from trainmedic.tabular.frozen import FrozenTransform, freeze
    from trainmedic.tabular.preprocess import dense_preprocessor, prepare_features, tree_preprocessor

    df = pd.DataFrame({"x": np.arange(30.0), "note": ["a b", "", "c"] * 10})
    ff = prepare_features(df, drop=[], text=["note"])
    for ct in (dense_preprocessor(ff), tree_preprocessor(ff)):
        A = ct.fit_transform(ff.X)
        spec = freeze(ct)
        text = [p for p in spec["parts"] if p["kind"] == "text"]
        assert len(text) == 1 and text[0]["components"] is None
        json.dumps(spec)
        np.testing.assert_allclose(FrozenTransform(spec).transform(ff.X), A, rtol=1e-12, atol=1e-12)
        assert np.all(A[:, -1] == 0)


def test_predict_without_the_text_column_is_tm114(text_saved, tmp_path, capsys):
    d, _, _ = text_saved
    pd.read_csv(d / "test.csv").drop(columns=["review"]).to_csv(tmp_path / "no_text.csv", index=False)
    code = main(["predict", str(d / "model"), str(tmp_path / "no_text.csv"), "--out", str(tmp_path / "p.csv")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "TM114" in line and "missing 'review'" in line
    assert not (tmp_path / "p.csv").exists()

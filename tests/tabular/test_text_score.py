"""The ``--text`` column's supervised, cross-fitted score (trainmedic.tabular.text_score): it carries rare words
that the SVD components miss, a training row's score never comes from a model that saw its target, and its
saved form gives the fitted columns for every kind of target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tabular_helpers import fast_config

from trainmedic.tabular.fit import fit_table
from trainmedic.tabular.frozen import FrozenTransform, freeze
from trainmedic.tabular.preprocess import dense_preprocessor, prepare_features, tree_preprocessor
from trainmedic.tabular.text_score import TextScore

NEUTRAL = ("room floor window door wall table chair light street garden kitchen bath stair roof hall corner "
           "front back side view town shop park bus train walk near far old new small large").split()
SIGNAL = {w: s for ws, s in (("pristine gleaming airy restored".split(), 1.0),
                              ("mould leaking rotten infested".split(), -1.0)) for w in ws}


def rare_word_table(n: int, seed: int) -> pd.DataFrame:
    """A binary target: one numeric column, and in 40 % of the rows one of 8 rare words (each in ~5 % of the
    rows) among 6-10 frequent neutral ones; a rare word moves the log-odds by +-3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    words, tone = [], np.zeros(n)
    for i in range(n):
        w = [str(v) for v in rng.choice(NEUTRAL, size=int(rng.integers(6, 11)))]
        if rng.uniform() < 0.4:
            s = str(rng.choice(list(SIGNAL)))
            w.insert(int(rng.integers(0, len(w))), s)
            tone[i] = SIGNAL[s]
        words.append(" ".join(w))
    eta = 0.8 * x + 3.0 * tone
    return pd.DataFrame({"x": x, "note": words, "y": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)})


def test_fit_text_with_rare_words_beats_the_fit_without_the_text():
    """Real fits (3 folds, the linear model and LightGBM): the rare words decide 40 % of the rows, and the
    text's score finds them; the fit that leaves the column out cannot. (A logistic regression given the true
    tone gains ~0.18 in log-loss over x alone on such a table; the margin asked is 0.05.)"""
    df = rare_word_table(600, seed=3)
    cfg = dict(models=("lightgbm", "linear"))
    plain = fit_table(df, "y", config=fast_config(**cfg)).cv
    used = fit_table(df, "y", config=fast_config(text=("note",), **cfg)).cv
    assert used["text_columns"] == ["note"] and used["metric"] == "log_loss"
    assert used["mean"] < plain["mean"] - 0.05, (used["mean"], plain["mean"])


def test_training_rows_scores_never_see_their_own_target():
    """A word unique to each row and a target of pure noise: the model fitted on all rows memorises the rows
    (its scores follow the target), the cross-fitted scores of the training rows cannot."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    n = 300
    y = rng.normal(size=n)
    T = TfidfVectorizer().fit_transform([f"common word{i}x" for i in range(n)])
    score = TextScore("regression")
    held = score.fit_transform(T, y)[:, 0]
    assert abs(np.corrcoef(held, y)[0, 1]) < 0.2
    assert np.corrcoef(score.transform(T)[:, 0], y)[0, 1] > 0.5  # what a leak would have given the members


@pytest.mark.parametrize("task", ["regression", "log-regression", "count", "binary", "multiclass"])
def test_score_columns_for_every_kind_of_target_and_their_frozen_form(task):
    """Each kind of target gets its score columns (one, or one per class), and the frozen spec (what --save
    stores) reproduces the fitted transformer on seen and unseen text."""
    df = rare_word_table(200, seed=1)
    tone = df.note.str.contains("|".join(w for w, s in SIGNAL.items() if s > 0)).to_numpy()
    y = {"regression": df.x.to_numpy() + 2 * tone, "log-regression": 0.3 * df.x.to_numpy() + tone,
         "count": np.random.default_rng(0).poisson(np.exp(0.5 * tone)),
         "binary": df.y.to_numpy(), "multiclass": (tone + 2 * (df.x.to_numpy() > 0)).astype(int)}[task]
    ff = prepare_features(df.drop(columns=["y"]), drop=[], text=["note"])
    new = prepare_features(pd.DataFrame({"x": [0.1, 2.0], "note": ["pristine airy hall", "zzz"]}), drop=[],
                           reference=ff)
    for ct in (dense_preprocessor(ff, task=task), tree_preprocessor(ff, task=task)):
        A = ct.fit_transform(ff.X, y)
        plain = ct.transform(ff.X)
        svd = 16
        width = 4 if task == "multiclass" else 1
        assert A.shape[1] == plain.shape[1] == 1 + svd + width
        frozen = FrozenTransform(freeze(ct))
        for X in (ff.X, new.X):
            np.testing.assert_allclose(frozen.transform(X), ct.transform(X), rtol=1e-10, atol=1e-12)

"""Heavy-tailed counts (issue 14): real fits on generated counts with a long right tail.

The blend must carry a LightGBM-Poisson member, weight its mean for the Poisson deviance and its
distribution for the NLL, report both, and never report a deviance worse than the LightGBM member's on the
same out-of-fold rows. The NB2 GLM behind the linear member's distribution is checked against the truth it
was drawn from.
"""

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from tabular_helpers import fast_config

from trainmedic.tabular import blend as B
from trainmedic.tabular.fit import cross_validate, fit_table, prepare
from trainmedic.tabular.importance import permutation_importance
from trainmedic.tabular.models import NBRegression, nb_logpmf


def heavy_tailed_counts(n: int, seed: int = 0) -> pd.DataFrame:
    """NB2 counts (size 0.4: mostly zeros) whose rate depends on the features, plus about 2 % of rows at
    20-90x the mean, more often where x2 is large: the shape of issue 14's failing case."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    grp = rng.choice(["a", "b", "c"], size=n)
    mu = np.exp(-0.4 + 0.7 * x1 + 0.5 * (grp == "a"))
    y = rng.poisson(rng.gamma(0.4, mu / 0.4)).astype(float)
    spike = rng.uniform(size=n) < 0.005 + 0.04 * (x2 > 1.2)
    y[spike] = np.round(y.mean() * rng.uniform(20, 90, size=int(spike.sum())))
    return pd.DataFrame({"x1": x1, "x2": x2, "grp": grp, "y": y.astype(int)})


def test_count_blend_has_a_lightgbm_poisson_member_and_reports_both_metrics(tmp_path):
    df = heavy_tailed_counts(600)
    assert (df["y"] > 20 * df["y"].mean()).sum() >= 5 and (df["y"] == 0).mean() > 0.5  # the shape asked for
    res = fit_table(df, "y", out=tmp_path / "run", config=fast_config(), save=tmp_path / "model")
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv["task"] == "count" and cv["metric"] == "poisson_deviance"
    # the LightGBM member boosts the Poisson objective and is weighted in both halves of the blend
    assert res.cv["config"]["models"] == ["mlp", "lightgbm", "linear"]
    for k in range(3):
        assert "objective=poisson" in (tmp_path / "model" / f"lightgbm-fold{k}-bag0.txt").read_text()
    assert set(cv["blend_weights"]) == {"mean", "distribution"}
    for half in ("mean", "distribution"):
        assert set(cv["blend_weights"][half]) == {"mlp", "lightgbm", "linear"}
        assert sum(cv["blend_weights"][half].values()) == pytest.approx(1.0, abs=1e-5)  # rounded to 6 places
    assert cv["models"]["lightgbm"]["nb_alpha"] and all(a > 0.3 for a in cv["models"]["lightgbm"]["nb_alpha"])
    # both metrics, for the blend and for every member, fold by fold
    assert len(cv["folds"]) == 3 and len(cv["nll"]["folds"]) == 3
    for name in ("mlp", "lightgbm", "linear", "blend", "blend_crossfit"):
        m = cv["models"][name]
        assert np.isfinite(m["mean"]) and np.isfinite(m["nll"]["mean"]) and len(m["nll"]["folds"]) == 3
    assert set(cv["best_model_by_metric"]) == {"poisson_deviance", "nll"}
    # the blend's pooled out-of-fold scores are those of the stored out-of-fold predictions
    mean, logp = res.oof["blend"]
    assert cv["pooled_oof"]["poisson_deviance"] == pytest.approx(B.poisson_deviance(mean, res.y))
    assert cv["pooled_oof"]["nll"] == pytest.approx(B.nll(logp))
    html = (tmp_path / "run" / "report.html").read_text()
    assert "held-out NLL per row" in html and f"{cv['nll']['mean']:.4f}" in html


def test_heavy_tail_blend_deviance_no_worse_than_the_lightgbm_member_on_the_same_rows():
    df = heavy_tailed_counts(900, seed=1)
    res = fit_table(df, "y", config=fast_config())
    cv, y = res.cv, res.y
    lgb_mean = res.oof["lightgbm"][0]
    blend_mean, blend_logp = res.oof["blend"]
    # the same out-of-fold rows: every row once, the member's and the blend's prediction for it
    assert B.poisson_deviance(blend_mean, y) <= B.poisson_deviance(lgb_mean, y) + 1e-12
    assert cv["models"]["blend"]["mean"] <= cv["models"]["lightgbm"]["mean"] + 1e-9  # equal folds (300 rows)
    # and the blend's distribution is no worse than the best member's, by NLL on those rows
    assert B.nll(blend_logp) <= min(B.nll(res.oof[m][1]) for m in ("mlp", "lightgbm", "linear")) + 1e-12
    # the two halves are weighted separately: the mean is not the distribution's mixture of means
    w = cv["blend_weights"]
    assert w["mean"] != w["distribution"]


def test_nb_regression_recovers_coefficients_and_dispersion():
    rng = np.random.default_rng(0)
    n, alpha = 6000, 2.0
    A = rng.normal(size=(n, 4))
    b = np.array([0.5, -0.3, 0.2, 0.0])
    mu = np.exp(0.3 + A @ b)
    y = rng.poisson(rng.gamma(1 / alpha, mu * alpha))
    m = NBRegression(lam=1e-6)
    theta = np.concatenate([[0.1], b / 2, [0.2]])
    err = optimize.check_grad(lambda t: m._objective(t, A, y)[0], lambda t: m._objective(t, A, y)[1], theta)
    assert err < 1e-5  # the exact gradient L-BFGS relies on
    m.fit(A, y)
    assert m.intercept_ == pytest.approx(0.3, abs=0.08)
    np.testing.assert_allclose(m.coef_, b, atol=0.06)
    assert m.alpha_ == pytest.approx(alpha, rel=0.15)
    # on such a tail its likelihood beats the same mean read as Poisson by far
    assert np.mean(nb_logpmf(y, m.predict(A), m.alpha_)) > np.mean(nb_logpmf(y, m.predict(A), 0.0)) + 0.3


def test_permutation_importance_stops_before_a_fold_past_the_deadline():
    """A deadline the first fold already uses up: that fold is measured, and no other after it."""
    df = heavy_tailed_counts(300, seed=2)
    cfg = fast_config(models=("lightgbm", "linear"), importance=False)
    p = prepare(df, "y", None, cfg)
    r = cross_validate(p, cfg)

    def folds_measured(deadline):
        gains, used = permutation_importance("count", p.features, p.y, r["folds"], r["fitted"], r["weights"],
                                             seed=0, deadline=deadline)
        assert set(gains) == {"x1", "x2", "grp"} and all(np.isfinite(v) for v in gains.values())
        return used

    assert folds_measured(time.perf_counter() + 1e-4) == 1
    assert folds_measured(None) == 3
    assert folds_measured(time.perf_counter() + 600) == 3

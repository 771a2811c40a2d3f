import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_poisson_deviance

from trainmedic.tabular import blend as B
from trainmedic.tabular.models import (
    count_classes,
    fit_nb_alpha,
    nb_logpmf,
    softmax_count_prediction,
    softmax_mean,
)


def test_poisson_deviance_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.poisson(1.0, 200)
    mu = rng.uniform(0.2, 3, 200)
    assert B.poisson_deviance(mu, y) == pytest.approx(mean_poisson_deviance(y, mu))


def test_convex_weights_find_the_better_model():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    good = y + rng.normal(scale=0.1, size=500)
    bad = rng.normal(size=500)
    w = B.fit_weights("regression", [good, bad], y)["point"]
    assert w.sum() == pytest.approx(1) and w[0] > 0.95 and (w >= 0).all()


def test_blend_never_worse_than_best_single_on_fit_rows():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    preds = [y + rng.normal(scale=s, size=300) for s in (0.3, 0.5, 0.8)]
    w = B.fit_weights("regression", preds, y)
    assert B.rmse(B.apply_weights("regression", preds, w), y) <= min(B.rmse(p, y) for p in preds) + 1e-9


def test_count_mixture_weights_and_classification():
    rng = np.random.default_rng(2)
    y = rng.poisson(0.5, 400)
    m1, m2 = np.full(400, 0.5), np.full(400, 2.0)
    preds = [(m1, stats.poisson.logpmf(y, m1)), (m2, stats.poisson.logpmf(y, m2))]
    w = B.fit_weights("count", preds, y)
    assert w["mean"][0] > 0.9 and w["distribution"][0] > 0.9
    probs = [np.tile([0.8, 0.2], (10, 1)), np.tile([0.5, 0.5], (10, 1))]
    yc = np.zeros(10, dtype=int)
    assert B.fit_weights("binary", probs, yc)["proba"][0] == pytest.approx(1.0, abs=1e-6)


def test_nb_pmf_sums_to_one_and_poisson_limit():
    ks = np.arange(0, 400)
    for alpha in (0.0, 0.5, 3.0):
        p = np.exp(nb_logpmf(ks, np.full(len(ks), 2.5), alpha))
        assert p.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(nb_logpmf(ks[:20], np.full(20, 1.3), 1e-10), stats.poisson.logpmf(ks[:20], 1.3), atol=1e-5)


def test_fit_nb_alpha_recovers_overdispersion():
    rng = np.random.default_rng(3)
    mu, alpha = 2.0, 0.7
    y = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu), size=20000)
    assert fit_nb_alpha(y, np.full(len(y), mu)) == pytest.approx(alpha, rel=0.1)


def test_softmax_count_distribution_is_proper():
    K, q = 4, 0.6
    lp = np.log(np.array([[0.5, 0.2, 0.1, 0.1, 0.1]]))
    pred = softmax_count_prediction(np.array([1.0]), lp, q)
    total = sum(np.exp(pred.logpmf(np.array([k])))[0] for k in range(300))
    assert total == pytest.approx(1.0, abs=1e-9)
    mean = sum(k * np.exp(pred.logpmf(np.array([k])))[0] for k in range(300))
    assert softmax_mean(lp, q)[0] == pytest.approx(mean, rel=1e-6)
    assert count_classes(np.zeros(100)) == 2
    assert count_classes(np.array([0] * 90 + [1] * 8 + [2, 3])) == 4  # 99th percentile 2.01 -> 0..3 + tail
    assert count_classes(np.arange(1000)) is None  # large counts: NB head instead of a softmax
    assert lp.shape[1] == K + 1

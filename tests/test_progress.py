"""Progress checks: not learning, dead first layer, a rise after a rate raise, the overfitting stop.

Curves are either recorded (per-epoch validation losses printed by ``benchmarks/heal.py``, and the
examples of issues 11 and 12) or synthetic with a known truth (pure noise around a trend), where the
false-alarm rate is measured over many seeds.
"""

import math

import numpy as np
import pytest
import torch

from trainmedic.heal.progress import curve_noise, dead_gradients, not_learning, overfitting, rose_after_change
from trainmedic.zoo._common import mlp


def noisy(level, n, sigma, seed, slope=0.0):
    rng = np.random.default_rng(seed)
    return list(level + slope * np.arange(n) + sigma * rng.standard_normal(n))


# ---------------------------------------------------------------------------------------------------------
# not learning
# ---------------------------------------------------------------------------------------------------------
def test_a_loss_sitting_at_the_constant_prediction_level_is_not_learning():
    # Adam at 100x its rate on 4 classes: the loss hovers at log(4) = 1.386 (benchmarks/heal.py)
    losses = noisy(1.39, 60, 0.03, 0)
    v = not_learning(losses, reference=math.log(4), window=50)
    assert v is not None and v.kind == "not-learning"
    assert v.evidence["window"] == 50 and v.evidence["level"] == pytest.approx(1.39, abs=0.02)


def test_worse_than_the_constant_prediction_is_not_learning_too():
    # a char LM at 30x: loss around 4, above the unigram entropy 3.27
    assert not_learning(noisy(4.0, 80, 0.3, 1), reference=3.27, window=50) is not None


def test_a_slow_but_steady_descent_is_left_alone():
    # a rate too low: near the starting level, but going down beyond its noise
    losses = noisy(2.30, 100, 0.02, 2, slope=-0.0015)
    assert not_learning(losses, reference=2.30, window=100) is None


def test_a_loss_clearly_below_the_reference_is_learning():
    assert not_learning(noisy(0.6, 100, 0.1, 3), reference=1.386, window=50) is None


def test_no_verdict_before_a_full_window():
    assert not_learning(noisy(1.39, 49, 0.03, 4), reference=1.386, window=50) is None


def test_not_learning_false_alarm_rate_on_descending_runs_is_low():
    # Healthy-looking runs: the loss starts at the reference and falls by 30 % over the window.
    alarms = sum(not_learning(list(np.linspace(1.0, 0.7, 50) + 0.05 * np.random.default_rng(s).standard_normal(50)),
                              reference=1.0, window=50) is not None for s in range(200))
    assert alarms == 0


# ---------------------------------------------------------------------------------------------------------
# dead first layer
# ---------------------------------------------------------------------------------------------------------
def test_exactly_zero_first_layer_gradient_is_death_not_vanishing():
    assert dead_gradients([0.0] * 10) is not None
    assert dead_gradients([1e-30] + [0.0] * 9) is None  # tiny is not dead
    assert dead_gradients([0.0] * 9) is None  # not yet long enough


def test_a_real_network_killed_by_a_huge_step_has_an_exactly_zero_first_layer_gradient():
    torch.manual_seed(0)
    model = mlp(8, 1, hidden=16)
    x = torch.randn(64, 8)
    y = torch.randn(64, 1)
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # what one blown-up step does to a ReLU layer: every unit off
    norms = []
    for _ in range(10):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        norms.append(float(model[0].weight.grad.norm()))
    v = dead_gradients(norms)
    assert v is not None and "dead" in v.message


# ---------------------------------------------------------------------------------------------------------
# a rise after the loop raised the rate
# ---------------------------------------------------------------------------------------------------------
def test_a_level_shift_after_a_rate_raise_is_seen_and_noise_is_not():
    before = noisy(0.41, 50, 0.12, 5)  # Adam at its tuned rate, minibatch losses
    assert rose_after_change(before, noisy(0.90, 50, 0.2, 6)) is not None  # x30: the level doubles
    assert rose_after_change(before, noisy(0.42, 50, 0.12, 7)) is None
    alarms = sum(rose_after_change(noisy(0.4, 50, 0.12, s), noisy(0.4, 50, 0.12, s + 1000)) is not None
                 for s in range(300))
    assert alarms <= 3


# ---------------------------------------------------------------------------------------------------------
# overfitting
# ---------------------------------------------------------------------------------------------------------
def test_curve_noise_estimates_the_noise_around_a_bending_trend():
    est = [curve_noise(list(1.0 / (1 + 0.3 * np.arange(12)) + 0.02 * np.random.default_rng(s).standard_normal(12)))
           for s in range(200)]
    assert 0.014 < float(np.median(est)) < 0.028


def test_a_clear_rise_while_training_improves_is_overfitting():
    val = [0.564, 0.441, 0.47, 0.471, 0.432, 0.418, 0.449, 0.5, 0.543, 0.626]  # Adam at 10x (heal.py, s1)
    train = [0.9, 0.6, 0.5, 0.45, 0.4, 0.35, 0.31, 0.28, 0.25, 0.23]
    v = overfitting(val, train)
    assert v is not None and v.evidence["best_epoch"] == 5 and v.evidence["evaluations_since_best"] == 4
    assert v.evidence["rise"] > 2 * v.evidence["noise_sigma"]
    assert overfitting(val, train[:5] + [0.35] * 5) is None  # training stalled meanwhile: not overfitting


def test_the_zigzag_of_a_rate_too_high_is_not_overfitting():
    # issue 12: Adam at 10x, validation over epochs 2-7: 0.07, 0.16, 0.10, 0.14, 0.16, 0.40
    val = [0.9, 0.2, 0.07, 0.16, 0.10, 0.14, 0.16]
    train = [1.0, 0.3, 0.12, 0.10, 0.09, 0.08, 0.07]
    assert overfitting(val, train) is None


def test_a_transient_bump_that_comes_back_down_is_not_overfitting():
    # issue 11: a house-price MLP whose validation bumps for a few epochs, then keeps improving
    val = [1.0, 0.6, 0.45, 0.40, 0.43, 0.45, 0.42, 0.38, 0.36]
    train = [1.1, 0.7, 0.5, 0.42, 0.38, 0.35, 0.33, 0.31, 0.30]
    for n in range(4, len(val) + 1):
        assert overfitting(val[:n], train[:n]) is None


def test_overfitting_false_alarm_rate_on_noisy_converging_curves_is_low():
    alarms = 0
    for s in range(300):
        rng = np.random.default_rng(s)
        e = np.arange(12)
        val = 0.3 + 0.7 * np.exp(-e / 2) + 0.03 * rng.standard_normal(12)  # converges, then flat + noise
        train = 0.25 + 0.75 * np.exp(-e / 2)
        alarms += overfitting(list(val), list(train)) is not None
    assert alarms <= 9  # <= 3 %

"""TM309 is a trend that persists, not two bad evaluations (found on a script written apart from the rules).

A two-headed MLP on sklearn's breast-cancer table (classification + a regressed feature, summed losses, SGD
with Nesterov momentum; ``benchmarks/fresh/multitask.py``) validates its regression head's MSE each epoch.
The curve is flat near its best for three evaluations, then two evaluations land 1.7-1.9x above it, and
the next one sets a new best. Four flat points and two high ones give Theil-Sen a significant positive
slope (two outliers among six are past its breakdown point), and the rule called it overfitting. Most
evaluations since the best must now sit above it (their median by one noise unit): a memorising network's
do, a step of two points does not.
"""

from __future__ import annotations

import numpy as np
from _two_heads import two_heads as _two_heads


def test_two_high_evaluations_then_a_new_best_are_not_overfitting():
    medic = _two_heads(seed=1, epochs=21)
    val = [e["val_loss"] for e in medic.epochs]
    best = int(np.argmin(val[:16]))
    high = [i for i in range(best + 1, len(val)) if val[i] > 1.5 * val[best]]
    assert len(high) >= 2 and min(val[max(high) + 1:]) < val[best], val  # the curve this test is about
    assert "TM309" not in {f.code for f in medic.findings}, [(f.code, f.message) for f in medic.findings]


def test_a_rising_trend_is_still_overfitting():
    from trainmedic.zoo import overfitting

    r = overfitting.train(mode="watch")
    tm309 = [f for f in r.medic.findings if f.code == "TM309"]
    assert tm309, [f.code for f in r.medic.findings]
    ev = tm309[0].evidence
    assert ev["median_rise"] > 3 * ev["noise"]  # every evaluation since the best rose, not a minority

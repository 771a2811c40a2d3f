"""The probe's valley read at its edge for optimizers with momentum or running moments (round eight).

A clear valley (``minimum/10``) used to be read at the smoothed curve's lowest point. Where the bottom is flat,
where in it that point falls is noise: a CNN with momentum probed from a snapshot already trained 25 steps at
10x its rate (heal benchmark, seed 2) saw losses of 0.2-1.3 per step from 0.0003 to 0.17 with no rise; the
lowest point fell at 0.0074 and heal continued at 0.00074, 40x below the tuned rate (4.44x the tuned run). The
valley's edge (the highest rate after the lowest point up to which the smoothed curve stays within
``probe_valley_edge_z`` standard errors of it) is read instead. Plain SGD keeps the lowest point (its
``minimum/2`` and the replay were calibrated on it).
"""

import pytest
import torch

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe, choose_lr, valley_edge
from trainmedic.heal.steering import Steering
from trainmedic.lr_find import suggest

# the probe event of digits-cnn-sgdm, start x10, seed 2 (benchmarks/heal_healE_lossfn.json): 36 rates from
# 0.000316 to the failed 0.316, from the step-25 snapshot
CNN_LRS = [0.316 * 10 ** (3 * (i / 35 - 1)) for i in range(36)]
CNN_LOSSES = [0.8917, 0.924, 0.7468, 0.674, 0.5227, 1.102, 1.115, 0.8873, 0.8606, 0.7181, 1.285, 0.7357, 0.6039,
              0.5382, 0.5636, 0.3609, 0.4411, 0.3487, 0.1957, 0.7517, 0.3534, 0.5353, 0.4665, 0.5382, 0.3155,
              0.328, 0.4322, 0.4548, 0.6039, 0.3692, 0.3017, 0.5496, 0.3107, 1.069, 0.43, 0.8922]


def test_a_flat_bottomed_valley_is_read_at_its_edge():
    lowest = choose_lr(CNN_LRS, CNN_LOSSES, ceiling=0.316)
    assert lowest.rule == "minimum/10" and lowest.lr == pytest.approx(0.000743, rel=1e-3)  # what main chose
    edge = choose_lr(CNN_LRS, CNN_LOSSES, ceiling=0.316, edge_z=2.0)
    assert edge.rule == "minimum/10" and edge.evidence["lr_valley_edge"] == pytest.approx(0.1748, rel=1e-3)
    assert edge.lr == pytest.approx(0.01748, rel=1e-3)  # tuned: 0.0316
    assert edge.evidence["lr_min_loss"] == lowest.evidence["lr_min_loss"]  # the rewind still reads the lowest point
    assert "stayed within 2 standard errors" in edge.reason


def test_a_sharp_valley_keeps_its_lowest_point():
    lrs = [0.3 * 10 ** (3 * (i / 35 - 1)) for i in range(36)]
    losses = [2.3 - 1.5 * min(i, 24) / 24 + (0.15 * (i - 24) ** 2 if i > 24 else 0.0) for i in range(36)]
    s = suggest(lrs, losses)
    assert valley_edge(lrs, losses, s["smoothed"], z=2.0) == pytest.approx(s["lr_min_loss"])
    a = choose_lr(lrs, losses, ceiling=0.3, edge_z=2.0)
    assert a.lr == choose_lr(lrs, losses, ceiling=0.3).lr and "lr_valley_edge" not in a.evidence


def test_the_edge_is_for_optimizers_with_state_and_survives_a_checkpoint():
    cfg = Thresholds()
    assert cfg.probe_valley_edge_z == 2.0
    for direct, expected in ((False, 2.0), (True, 0.0)):
        steer = Steering(cfg, direct_steps=direct)
        steer.start(to_step=0, ceiling=0.1, known_good=None, reason="TM317", early=True, step=10)
        assert steer.session.probe.edge_z == expected
        assert LRProbe.from_state(steer.session.probe.state_dict()).edge_z == expected


def _train(z: float):
    """Adam at 100x on a 4-class MLP (tests/test_rate_audit.py's task, seed 1): TM317 at step 60, a probe from
    the initial weights."""
    from test_rate_audit import train

    medic, _, vals, _ = train(1e-1, "heal", seed=1, epochs=6, thresholds={"probe_valley_edge_z": z})
    return next(e for e in medic.events if e.get("action") == "probe"), vals


def test_a_real_probe_continues_a_decade_below_the_valleys_edge():
    probe, vals = _train(2.0)
    lrs, losses = [t[0] for t in probe["trace"]], [t[1] for t in probe["trace"]]
    s = suggest(lrs, losses)
    edge = valley_edge(lrs, losses, s["smoothed"], z=2.0)
    assert edge > s["lr_min_loss"]  # the curve stays flat past its lowest point here
    assert probe["rule"] == "minimum/10" and probe["lr_after"] == pytest.approx(edge / 10, rel=1e-3)
    assert "stayed within 2 standard errors" in probe["why"]
    before, vals_before = _train(0.0)  # off: the lowest point, as before round eight
    assert before["lr_after"] == pytest.approx(s["lr_min_loss"] / 10, rel=1e-3)
    assert all(torch.isfinite(torch.tensor(v)) for v in vals + vals_before)
    assert vals[-1] < 1.386 * 0.6  # the run learns either way (ln 4: the constant level)


# the probe event of classify-mlp-adam, start x100, seed 0 (benchmarks/heal_healE_lossfn.json): 36 rates from
# 0.0001 to the failed 0.1, from the initial weights after TM317
CLS_LRS = [0.1 * 10 ** (3 * (i / 35 - 1)) for i in range(36)]
CLS_LOSSES = [1.534, 1.405, 1.365, 1.259, 1.387, 1.396, 1.402, 1.284, 1.356, 1.339, 1.299, 1.284, 1.331, 1.256,
              1.187, 1.26, 1.204, 1.089, 1.13, 1.129, 1.002, 1.031, 0.9834, 0.9934, 1.216, 1.046, 0.8886, 1.194,
              1.331, 1.209, 0.6011, 0.6905, 1.736, 0.7253, 0.795, 1.336]


def test_the_edge_does_not_reach_past_a_step_that_undid_the_probes_progress():
    # The smoothed curve is lowest at 0.0553 and within 2 standard errors of it up to 0.0674, but the step at
    # 0.0553 itself lost 1.74 against a start of 1.36: not a flat bottom, a rate that already throws the run back.
    # Round eight read the edge (0.0067 continued, 6.7x the tuned 0.001; the run ended 1.27x the tuned one); the
    # lowest point is read now (0.0055; 1.11x before round eight).
    s = suggest(CLS_LRS, CLS_LOSSES)
    assert s["lr_min_loss"] == pytest.approx(0.0553, rel=1e-3)
    start = sorted(s["smoothed"][:12])[5:7]
    assert CLS_LOSSES[32] > max(start)  # the lowest point's own step rose above where the probe started
    assert valley_edge(CLS_LRS, CLS_LOSSES, s["smoothed"], z=2.0) == pytest.approx(s["lr_min_loss"])
    a = choose_lr(CLS_LRS, CLS_LOSSES, ceiling=0.1, edge_z=2.0)
    assert a.rule == "minimum/10" and a.lr == pytest.approx(0.00553, rel=1e-3) and "lr_valley_edge" not in a.evidence

"""TM309 on a quantized validation curve: an error rate counted over a small validation set.

The curves are the recorded output of ``benchmarks/fresh3/gnn_message.py`` (a healthy graph network, one
full-batch step an epoch, validation error over 180 nodes printed as counts), seeds 0 and 1; the training
loss is the script's. On the code before ``curve_resolution`` the curve's noise read 0 (most second
differences of a curve that sits on one value are exactly 0) and TM309 fired at evaluations 67 and 33 for a
rise of one to four nodes that came back (the binomial standard error of 6 % on 180 nodes is about three
nodes). A real rise on the same quantized scale is still reported."""

import numpy as np

from trainmedic.rules.curves import curve_noise, curve_resolution, overfitting_evidence

VAL0 = [126, 80, 72, 68, 66, 63, 57, 53, 50, 43, 37, 29, 29, 22, 18, 14, 14, 12, 12, 13, 12, 12, 11, 11, 11, 11,
        12, 12, 12, 12, 12, 12, 12, 12, 12, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
        12, 12, 12, 12, 12, 12, 13, 12, 13, 14, 15, 15, 15, 15, 15, 14, 14, 14, 14, 14, 15, 15, 15, 15, 14, 14]
TRAIN0 = [1.397, 1.3473, 1.3124, 1.248, 1.204, 1.1685, 1.1163, 1.0683, 1.02, 0.9922, 0.9293, 0.8796, 0.8528,
          0.7679, 0.7344, 0.6841, 0.5991, 0.5832, 0.5405, 0.4772, 0.4997, 0.4466, 0.4224, 0.4053, 0.3596, 0.347,
          0.3311, 0.3326, 0.2763, 0.2881, 0.2736, 0.2671, 0.2644, 0.2275, 0.2763, 0.2142, 0.2113, 0.1796, 0.2903,
          0.235, 0.2003, 0.2405, 0.2215, 0.1914, 0.1977, 0.2013, 0.1622, 0.1908, 0.182, 0.1706, 0.1695, 0.191,
          0.1847, 0.2097, 0.1586, 0.1359, 0.1792, 0.1656, 0.1836, 0.1443, 0.1603, 0.1267, 0.1409, 0.1413, 0.1519,
          0.1874, 0.1209, 0.1588, 0.1341, 0.1262, 0.1447, 0.141, 0.195, 0.1472, 0.1564, 0.1531, 0.1407, 0.11]
VAL1 = [95, 73, 60, 54, 55, 54, 45, 39, 31, 24, 23, 23, 22, 22, 20, 19, 18, 18, 16, 16, 15, 14, 14, 13, 12, 12,
        11, 12, 12, 12, 13, 13, 13, 14, 14, 14, 14, 14, 13, 13, 12, 12, 11, 11]
TRAIN1 = [1.3967, 1.3434, 1.3034, 1.2641, 1.205, 1.1751, 1.1139, 1.0506, 1.0004, 0.9553, 0.9033, 0.8219, 0.7751,
          0.7434, 0.6683, 0.6194, 0.5954, 0.5544, 0.5112, 0.4819, 0.4188, 0.432, 0.3911, 0.4064, 0.3484, 0.3452,
          0.3107, 0.2975, 0.3072, 0.2921, 0.2848, 0.2621, 0.2737, 0.2451, 0.3059, 0.2428, 0.2437, 0.2227, 0.2653,
          0.2291, 0.2341, 0.2422, 0.237, 0.221]


def _verdicts(val_counts, train):
    val = np.asarray(val_counts, dtype=float) / 180
    return [overfitting_evidence(val[:k], np.asarray(train[:k])) for k in range(5, len(val) + 1)]


def test_a_count_over_180_nodes_has_a_step_and_no_bump_of_a_few_nodes_is_overfitting():
    val = np.asarray(VAL0, dtype=float) / 180
    assert curve_noise(val) < 1e-15  # what the rule used to read: no noise
    p = 11 / 180  # the best value: the floor is its binomial standard error on 180 nodes
    assert abs(curve_resolution(val) - (p * (1 - p) / 180) ** 0.5) < 1e-12
    assert not any(e.overfitting for e in _verdicts(VAL0, TRAIN0))
    assert not any(e.overfitting for e in _verdicts(VAL1, TRAIN1))


def test_a_floating_point_loss_has_no_step():
    rng = np.random.default_rng(0)
    assert curve_resolution(np.linspace(1.0, 0.5, 30) + 0.01 * rng.standard_normal(30)) == 0.0


def test_a_real_rise_on_the_same_quantized_scale_is_still_overfitting():
    # the network memorises: from its best at 11 nodes the error climbs to 30 and stays, training still falling
    val = VAL1[:27] + [12, 14, 15, 17, 19, 21, 22, 24, 26, 27, 29, 30, 30, 31]
    train = TRAIN1[:len(val)]
    assert _verdicts(val, train)[-1].overfitting

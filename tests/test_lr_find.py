"""The learning-rate range test: isolation, divergence stop, suggestion, TM209."""

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

import trainmedic
from trainmedic.lr_find import suggest
from trainmedic.zoo._common import mlp, regression_data


def batches(seed: int = 0):
    x, y = regression_data(n=1024, d=16, noise=0.3)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i:i + 32]], y[order[i:i + 32]]) for i in range(0, len(x), 32)]


def setup(lr: float = 1e-3):
    torch.manual_seed(0)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return model, opt


def test_range_test_leaves_everything_untouched_and_stops_on_divergence():
    model, opt = setup()
    F.mse_loss(model(batches()[0][0]), batches()[0][1]).backward()
    opt.step()  # momentum buffers exist
    before = copy.deepcopy(model.state_dict())
    opt_before = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    res = trainmedic.lr_find(model, opt, F.mse_loss, batches())
    assert all(torch.equal(a, b) for a, b in zip(before.values(), model.state_dict().values()))
    assert opt.param_groups[0]["lr"] == 1e-3
    assert all(torch.equal(opt_before["state"][k]["momentum_buffer"], v["momentum_buffer"])
               for k, v in opt.state_dict()["state"].items())
    assert torch.equal(rng, torch.get_rng_state())
    # the schedule is exponential, and the run stopped once the loss blew up (SGD+momentum dies above ~0.3)
    assert res.stopped_early and len(res.lrs) < 100
    ratios = np.diff(np.log(res.lrs))
    assert np.allclose(ratios, ratios[0])
    assert res.confident and res.rule == "minimum/3"
    assert 1e-3 < res.suggestion < 0.1 < res.lr_diverged < 10
    assert res.candidates["minimum/10"] < res.suggestion < res.lr_min_loss < res.lr_diverged
    assert res.findings == []  # 1e-3 is within the useful range


def test_tm209_past_divergence_and_far_below():
    model, opt = setup(lr=5.0)
    res = trainmedic.lr_find(model, opt, F.mse_loss, batches())
    assert [f.code for f in res.findings] == ["TM209"]
    assert "past the divergence point" in res.findings[0].message
    model, opt = setup(lr=1e-6)
    res = trainmedic.lr_find(model, opt, F.mse_loss, batches())
    assert [f.code for f in res.findings] == ["TM209"] and "below" in res.findings[0].message
    assert res.findings[0].evidence["configured_lr"] == 1e-6


def test_param_groups_keep_their_ratios():
    torch.manual_seed(0)
    model = mlp(16, 1)
    opt = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1e-3},
                            {"params": list(model[2].parameters()) + list(model[4].parameters()), "lr": 1e-4}])
    seen = []

    def loss_fn(out, t):
        seen.append(1)
        return F.mse_loss(out, t)

    res = trainmedic.lr_find(model, opt, loss_fn, batches(), num_iter=30, end_lr=1e-2)
    assert len(seen) == len(res.lrs) == 30
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4]


def test_suggest_uses_log_lr_slopes_and_a_lag_free_smoothing():
    # a synthetic curve: flat, a valley between 1e-3 and 1e-1, divergence after 1e-1
    lrs = np.logspace(-6, 1, 100)
    x = np.log10(lrs)
    curve = 1.0 - 0.8 / (1 + np.exp(-(x + 2.5) * 4)) + np.where(x > -1, (x + 1) ** 2 * 3, 0)
    s = suggest(lrs.tolist(), curve.tolist())
    i_min = int(np.argmin(curve))
    assert abs(math.log10(s["lr_min_loss"]) - x[i_min]) < 0.15  # centered smoothing: no lag
    assert abs(math.log10(s["candidates"]["steepest"]) + 2.5) < 0.15  # the inflection, in log-lr
    assert s["lr_diverged"] > s["lr_min_loss"]
    assert s["valley_z"] > 5
    # pure noise has no valley worth trusting
    rng = np.random.default_rng(0)
    flat = suggest(lrs.tolist(), (1 + 0.3 * rng.standard_normal(100)).tolist())
    assert flat["valley_z"] < 5


def test_a_flat_curve_falls_back_and_does_not_judge():
    torch.manual_seed(0)
    x, y = torch.randn(512, 8), torch.randn(512, 1)  # pure noise targets: nothing to learn
    data = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 512, 32)]
    model = mlp(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    res = trainmedic.lr_find(model, opt, F.mse_loss, data, end_lr=1e-2, num_iter=60)
    assert not res.confident and res.rule == "minimum/10" and res.findings == []

"""The online learning-rate probe: its state machine, its decision on recorded traces, and a real loop.

The recorded traces in ``tests/data/probe_traces.json`` are the probe events of the prototype heal loop in
``benchmarks/heal.py --seeds 0 1`` (see ``source`` in the file): each is what the probe saw, step by step,
after a rollback.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe, ProbeDone, ProbeStep, choose_lr, rise_point
from trainmedic.heal.snapshot import Snapshot
from trainmedic.heal.steering import Steering
from trainmedic.lr_find import suggest
from trainmedic.zoo._common import mlp, regression_data

TRACES = json.loads((Path(__file__).parent / "data" / "probe_traces.json").read_text())["traces"]


def test_schedule_is_exponential_below_the_ceiling_and_ends_after_its_budget():
    probe = LRProbe(1.0, steps=10, decades=2.0)
    rates = []
    for _ in range(9):
        ans = probe.observe(1.0)  # a flat loss: never diverges
        assert isinstance(ans, ProbeStep)
        rates.append(ans.lr)
    assert rates[0] == pytest.approx(0.01)
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)
    done = probe.observe(1.0)
    assert isinstance(done, ProbeDone) and probe.done
    assert done.choice.steps == 10 and done.choice.lrs[-1] == pytest.approx(1.0)
    # a flat trace is no evidence either way: a decade below the rate that failed
    assert done.choice.rule == "ceiling/10" and done.choice.lr == pytest.approx(0.1)
    assert probe.observe(1.0) == done  # answers stay the same once done


def test_stops_at_the_first_nonfinite_loss_and_on_three_losses_far_above_the_best():
    probe = LRProbe(1.0, steps=36)
    for v in [2.0, 1.9, 1.8, 1.7, 1.6, 1.5]:
        assert isinstance(probe.observe(v), ProbeStep)
    done = probe.observe(math.nan)
    assert isinstance(done, ProbeDone) and done.choice.evidence["stopped"] == "non-finite loss"
    assert done.choice.steps == 7

    probe = LRProbe(1.0, steps=36)
    answers = [probe.observe(v) for v in [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 5.0, 0.5, 5.0, 5.0]]
    assert all(isinstance(a, ProbeStep) for a in answers)  # one or two bad batches do not stop it
    assert isinstance(probe.observe(5.0), ProbeDone)  # three in a row above 4x the best running mean do


def test_heavy_tailed_batches_from_trained_weights_are_not_a_divergence():
    """Recorded: a CNN with momentum rolled back to a snapshot at loss ~0.06 after a x30 rate jump. Its
    batch losses range from 0.01 to 0.25 at rates 30x below the one it trained at healthily; the running
    mean of the first two sat at 0.017, and these 7 steps used to stop the probe as a divergence (then
    rise/10 chose 0.00095 against the healthy 0.0316). A real blow-up after them still stops it."""
    seen = [0.0131, 0.0222, 0.24, 0.0313, 0.148, 0.178, 0.13, 0.06, 0.09, 0.05]
    probe = LRProbe(0.948, steps=36, known_good=0.0316)
    assert all(isinstance(probe.observe(v), ProbeStep) for v in seen)
    answers = [probe.observe(v) for v in (3.0, 40.0, 900.0)]
    assert isinstance(answers[-1], ProbeDone) and "exceed" in answers[-1].choice.evidence["stopped"]


def test_rejects_a_probe_without_a_usable_ceiling():
    with pytest.raises(ValueError):
        LRProbe(0.0)
    with pytest.raises(ValueError):
        LRProbe(math.inf)


@pytest.mark.parametrize("name", ["adam_from_init", "cnn_from_init",
                                  "sgd_from_init_stopped_on_divergence"])
def test_from_the_initial_weights_a_decade_below_the_lowest_point(name):
    tr = TRACES[name]
    choice = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"])
    lr_min = suggest(tr["lrs"], tr["losses"])["lr_min_loss"]
    assert choice.rule == "minimum/10"
    assert choice.lr == pytest.approx(min(lr_min / 10, tr["ceiling"] / 3))
    assert choice.lr <= tr["ceiling"] / 3
    assert choice.lr == pytest.approx(tr["chosen"], rel=1e-3)  # what the benchmark run chose
    assert "lowest" in choice.reason


@pytest.mark.parametrize("name", ["adam_from_init", "cnn_from_init"])
def test_a_valley_is_read_2x_below_for_plain_sgd_and_10x_below_for_an_optimizer_with_state(name):
    """The same trace, two optimizers: plain SGD's loss answers the rate at once (valley_divisor 2, what the
    engine's Steering uses for it); momentum or running moments answer it a decade late in a 36-step
    probe (10)."""
    tr = TRACES[name]
    lr_min = suggest(tr["lrs"], tr["losses"])["lr_min_loss"]
    divisor = Steering(Thresholds(), direct_steps=True).valley_divisor
    assert divisor == 2.0 and Steering(Thresholds()).valley_divisor == 10.0
    direct = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"], valley_divisor=divisor)
    lagged = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"])
    assert (direct.rule, lagged.rule) == ("minimum/2", "minimum/10")
    assert direct.lr == pytest.approx(min(lr_min / 2, tr["ceiling"] / 3))
    assert lagged.lr == pytest.approx(min(lr_min / 10, tr["ceiling"] / 3))
    assert "2x below" in direct.reason and "a decade below" in lagged.reason
    probe = LRProbe(tr["ceiling"], valley_divisor=divisor)
    assert LRProbe.from_state(probe.state_dict()).valley_divisor == 2.0


def test_only_plain_sgd_steps_directly():
    from trainmedic.signals.stepping import direct_steps

    params = [torch.nn.Parameter(torch.zeros(2))]
    assert direct_steps(torch.optim.SGD(params, lr=0.1))
    assert not direct_steps(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    assert not direct_steps(torch.optim.Adam(params, lr=0.1))
    assert not direct_steps(torch.optim.RMSprop(params, lr=0.1))


def test_a_loss_still_falling_at_the_ceiling_gives_a_decade_below_the_ceiling():
    # From initial weights at a rate that fails only later (a CNN with momentum dies after a few dozen
    # steps), the short probe's loss is still falling at the ceiling: the lowest point is censored there.
    lrs = [0.316 * 10 ** (3 * (i / 35 - 1)) for i in range(36)]
    losses = [2.3 - 1.2 * (i / 35) ** 4 for i in range(36)]
    choice = choose_lr(lrs, losses, ceiling=0.316)
    assert choice.rule == "minimum/10" and choice.lr == pytest.approx(0.0316, rel=1e-6)


@pytest.mark.parametrize("name", ["sgd_from_trained_weights", "gru_from_trained_weights"])
def test_from_trained_weights_the_rate_the_run_was_healthy_at_is_kept_when_the_probe_agrees(name):
    tr = TRACES[name]
    good = tr["tuned_lr"]  # the snapshot was taken after epochs at the tuned rate, before the x30 jump
    choice = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"], known_good=good)
    assert choice.rule == "known-good" and choice.lr == good
    assert choice.evidence["lr_rise"] is not None and choice.evidence["lr_rise"] > good
    # Without that knowledge the flat start of the trace is no valley; the rise alone decides.
    blind = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"])
    assert blind.rule in ("rise/10", "minimum/10")
    assert blind.lr < good


def test_known_good_is_dropped_when_the_probe_saw_the_loss_rise_at_or_below_it():
    tr = TRACES["sgd_from_trained_weights"]
    rise = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"])
    lr_rise = rise.evidence["lr_rise"]
    choice = choose_lr(tr["lrs"], tr["losses"], ceiling=tr["ceiling"], known_good=lr_rise * 2)
    assert choice.rule != "known-good" and choice.lr < lr_rise


def test_rise_point_ignores_noise_on_a_flat_trace():
    g = torch.Generator().manual_seed(0)
    lrs = [1e-4 * 10 ** (3 * i / 35) for i in range(36)]
    for _ in range(20):
        losses = (0.2 + 0.05 * torch.randn(36, generator=g)).tolist()
        sm = suggest(lrs, losses)["smoothed"]
        assert rise_point(lrs, losses, sm) is None
    losses = [0.2] * 30 + [0.3, 0.5, 0.9, 1.5, 2.5, 4.0]
    assert rise_point(lrs, losses, suggest(lrs, losses)["smoothed"]) == pytest.approx(lrs[29], rel=0.3)


def test_immediate_divergence_is_no_evidence_and_goes_below_the_range():
    choice = choose_lr([1e-3, 2e-3, 4e-3], [1.0, math.inf, math.inf], ceiling=1.0)
    assert choice.rule == "no-evidence" and choice.lr == pytest.approx(1e-4)


def _batches(x, y, seed, n=32):
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return [(x[order[i:i + n]], y[order[i:i + n]]) for i in range(0, len(x) - n + 1, n)]


def _train(model, opt, batches, lr=None):
    for xb, yb in batches:
        loss = F.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        if lr is not None:
            for g in opt.param_groups:
                g["lr"] = lr
        opt.step()


def test_a_real_loop_driven_by_hand_recovers_from_a_rate_that_diverges():
    """The test plays the engine: it sees each loss before the step, snapshots, restores, sets the rate."""
    x, y = regression_data(n=1024, d=16, noise=0.3)
    xv, yv = regression_data(n=512, d=16, noise=0.3, split="val")
    torch.manual_seed(0)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=10.0)  # ~100x too high: non-finite within a few steps
    snap = Snapshot.take(0, model, opt, None, None)
    stream = iter([b for epoch in range(20) for b in _batches(x, y, epoch)])

    failed_at = None
    for t in range(50):  # the plain loop until the loss is not finite
        xb, yb = next(stream)
        loss = F.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        if not torch.isfinite(loss):
            failed_at = t
            break
        opt.step()
    assert failed_at is not None and failed_at < 20

    snap.restore(model, opt, None, None)
    probe = LRProbe(opt.param_groups[0]["lr"])
    steps = 0
    while True:
        xb, yb = next(stream)
        loss = F.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        ans = probe.observe(float(loss.detach()))
        steps += 1
        if isinstance(ans, ProbeDone):
            break
        for g in opt.param_groups:
            g["lr"] = ans.lr
        opt.step()
    choice = ans.choice
    assert steps == choice.steps <= 36
    assert choice.rule in ("minimum/10", "rise/10")
    assert 1e-3 < choice.lr < 10.0 / 3

    snap.restore(model, opt, None, None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), snap.model.values()))
    for g in opt.param_groups:
        g["lr"] = choice.lr
    _train(model, opt, [next(stream) for _ in range(300)])
    with torch.no_grad():
        healed = F.mse_loss(model(xv), yv).item()
    assert math.isfinite(healed)

    # The same 300 steps at the rate a careful person would pick (the best of a half-decade grid).
    finals = {}
    for lr in (0.01, 0.0316, 0.1, 0.316):
        torch.manual_seed(0)
        m = mlp(16, 1)
        o = torch.optim.SGD(m.parameters(), lr=lr)
        _train(m, o, [b for epoch in range(20) for b in _batches(x, y, epoch)][:300])
        with torch.no_grad():
            finals[lr] = F.mse_loss(m(xv), yv).item()
    best = min(v for v in finals.values() if math.isfinite(v))
    assert healed < 1.25 * best, (healed, finals, choice.lr)

"""Heal lands a run on a good rate (issue 12): real tiny models trained into each repair.

* a rate far too high blows up in the first steps: rollback to the initial weights, a learning-rate probe
  from them, then a linear warmup to the probed rate; the run ends close to a run at a good rate;
* Adam at 100x its rate learns nothing (TM317): rollback, probe, repaired;
* every unit after the first layer dies (TM318): rollback to a snapshot from before, the run trains on;
* the loop raises the rate x30 mid-run and the loss settles higher (TM319): rollback to before the raise,
  the rate the run trained at there is kept;
* after a rollback (and at the end of a probe) the weights are the snapshot's, bit for bit;
* probes are bounded by their budget; healthy runs under heal end exactly where the plain loop ends.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from trainmedic import Medic
from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe
from trainmedic.heal.steering import Steering
from trainmedic.zoo._common import mlp, regression_data


def _classes():
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return x[:1024], y[:1024], x[1024:], y[1024:]


def _regression():
    x, y = regression_data(n=1024, d=16, seed=0, noise=0.3)
    xv, yv = regression_data(n=512, d=16, seed=0, noise=0.3, split="val")
    return x, y, xv, yv


def train(data, make_opt, loss_fn, *, mode, epochs, hidden=64, seed=0, jump=None, on_step=None, thresholds=None):
    """Train an MLP; returns (driver or None, validation per epoch, lr per step, weights at each step start)."""
    x, y, xv, yv = data
    torch.manual_seed(seed)
    model = mlp(x.shape[1], int(y.max()) + 1 if y.dtype == torch.long else 1, hidden=hidden)
    opt = make_opt(model.parameters())
    medic = Medic(model, opt, mode=mode, console=False, thresholds=thresholds) if mode != "plain" else None
    vals, lrs, t = [], [], 0
    for epoch in range(epochs):
        if jump is not None and epoch == jump[0]:
            for g in opt.param_groups:
                g["lr"] *= jump[1]
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if on_step is not None:
                on_step(t, model, medic)
            lrs.append(opt.param_groups[0]["lr"])
            medic.step(loss) if medic is not None else opt.step()
            t += 1
        with torch.no_grad():
            vals.append(float(loss_fn(model(xv), yv)))
        if medic is not None:
            medic.end_epoch(val_loss=vals[-1])
            if medic.should_stop:
                break
    return medic, vals, lrs, model


def actions(medic, kind=None):
    return [e for e in medic.events if e["type"] == "action" and (kind is None or e["action"] == kind)]


def sgd(lr):
    return lambda p: torch.optim.SGD(p, lr=lr)


def adam(lr):
    return lambda p: torch.optim.Adam(p, lr=lr)


# ---------------------------------------------------------------------------------------------------
def test_blow_up_in_the_first_steps_restarts_from_the_initial_weights_with_a_probe_and_warmup():
    """Plain SGD at 30x a good rate (3.0 against 0.1): the loss explodes within a few steps. (Without the
    ramp's copies, ``probe_rewind_every=0``: the restored snapshot and a linear warmup.)"""
    data = _regression()
    _, good, _, _ = train(data, sgd(0.1), F.mse_loss, mode="plain", epochs=6)
    _, plain, _, _ = train(data, sgd(3.0), F.mse_loss, mode="plain", epochs=6)
    initial = {}
    medic, vals, lrs, model = train(data, sgd(3.0), F.mse_loss, mode="heal", epochs=6,
                                    thresholds={"probe_rewind_every": 0},
                                    on_step=lambda t, m, md: initial or initial.update(
                                        {k: v.clone() for k, v in m.state_dict().items()}))
    rb, probe = actions(medic, "rollback"), actions(medic, "probe")
    assert rb and rb[0]["to_step"] == 0 and rb[0]["reason"] in ("TM305", "TM301", "TM302")
    assert rb[0]["step"] < 50  # caught in the first steps, before any healthy snapshot
    assert len(probe) == 1
    p = probe[0]
    # what was probed and why this rate: the range below the failing rate, the trace, the rule
    assert p["lr_before"] == 3.0 and p["probed"][1] <= 3.0 and p["probed"][0] == pytest.approx(3e-3)
    assert p["rule"] and p["why"] and 8 <= p["probe_steps"] <= 36 and len(p["trace"]) == p["probe_steps"]
    assert p["lr_after"] <= 1.0  # at most ceiling / 3
    # linear warmup to the probed rate over heal_warmup_steps, from the step after the probe
    assert p["warmup_steps"] == 50
    after = lrs[p["step"] + 1:p["step"] + 51]
    assert after[0] == pytest.approx(p["lr_after"] / 50)
    assert after[-1] == pytest.approx(p["lr_after"])
    assert all(b > a for a, b in zip(after, after[1:]))
    assert not plain[-1] < 3 * good[-1]  # the plain run is lost (inf or nan)
    assert vals[-1] < 1.5 * good[-1], (vals[-1], good[-1], p)
    assert medic.probe_steps == p["probe_steps"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_sgd_lands_near_the_good_rate_and_its_warmup_is_not_judged_not_learning(seed):
    """Plain SGD at 10x (1.0 against 0.1). Its probe's valley is read 2x below its lowest point (plain SGD
    answers the rate at once, and its lowest point sits about 2x above the best rate), and the steps
    after the probe are not read as "not learning": TM317 judges one rate at a time. Before both, heal
    chose a decade below the valley, TM317 fired on the warmup and a second probe ended at 1/100 of the
    good rate (1.5 against 0.23).

    The good rate here is 0.1: the best of 0.0316 / 0.1 / 0.316 on seeds 0-3 (final validation 0.227-0.236
    against 0.232-0.257 and 0.259-0.636). ``minimum/2`` chooses 0.085-0.103 on these seeds; ``minimum/3``
    (rounds three and four) chose 0.056-0.069, below the 0.075 asserted."""
    data = _regression()
    _, good, _, _ = train(data, sgd(0.1), F.mse_loss, mode="plain", epochs=6, seed=seed)
    medic, vals, lrs, _ = train(data, sgd(1.0), F.mse_loss, mode="heal", epochs=6, seed=seed)
    probe = actions(medic, "probe")
    assert len(probe) == 1 and probe[0]["rule"] == "minimum/2", probe
    assert "TM317" not in [f.code for f in medic.findings]
    assert lrs[-1] == pytest.approx(probe[0]["lr_after"])  # the run continues at the probed rate
    assert 0.075 < probe[0]["lr_after"] < 0.135, probe[0]["lr_after"]  # within 4/3 of the good rate
    assert vals[-1] < 1.15 * good[-1], (vals, good)


def test_a_warmup_of_the_loop_itself_is_not_judged_not_learning():
    """Watch mode, SGD warming up linearly over 400 steps to a good rate: the first 50 steps are not a
    rate too high. (Before TM317 judged one rate at a time, it fired here at step 50.)"""
    x, y, _, _ = _regression()
    torch.manual_seed(2)
    model = mlp(16, 1, hidden=64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 400))
    medic = Medic(model, opt, mode="watch", console=False)
    for epoch in range(6):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2000 + epoch))
        for i in range(0, len(x) - 31, 32):
            loss = F.mse_loss(model(x[order[i:i + 32]]), y[order[i:i + 32]])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
            sched.step()
    assert medic.step_count == 6 * 32
    assert [f.code for f in medic.findings if f.severity in ("warning", "error")] == []


def test_weights_after_the_probe_are_the_snapshots_bit_for_bit():
    """A probe trains from the restored snapshot; when it ends, the snapshot is restored again exactly."""
    data = _regression()
    seen = {}

    def record(t, model, medic):
        seen[t] = {k: v.clone() for k, v in model.state_dict().items()}

    medic, _, _, _ = train(data, sgd(3.0), F.mse_loss, mode="heal", epochs=2, on_step=record,
                           thresholds={"probe_rewind_every": 0})
    p = actions(medic, "probe")[0]
    # the weights the step after the probe started from are the snapshot's (step 0: the initial weights)
    after = seen[p["step"] + 1]
    for k, v in seen[p["to_step"]].items():
        assert torch.equal(after[k], v), k
    # and the steps of the probe itself did move them
    assert any(not torch.equal(seen[p["step"]][k], v) for k, v in seen[p["to_step"]].items())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_sgd_continues_from_where_the_probe_ramp_reached_the_chosen_rate(seed):
    """Plain SGD at 30x: the probe from the initial weights ramps the rate up; heal continues from its copy
    of the state where the ramp reached the chosen rate (bit for bit), at that rate, with no second
    warmup, and ends near the good run; the restored snapshot plus a linear warmup lands no closer."""
    data = _regression()
    seen = {}

    def record(t, model, medic):
        seen[t] = {k: v.clone() for k, v in model.state_dict().items()}

    _, good, _, _ = train(data, sgd(0.1), F.mse_loss, mode="plain", epochs=6, seed=seed)
    medic, vals, lrs, _ = train(data, sgd(3.0), F.mse_loss, mode="heal", epochs=6, seed=seed, on_step=record)
    rb, probe = actions(medic, "rollback"), actions(medic, "probe")
    assert rb[0]["to_step"] == 0 and len(probe) == 1
    p = probe[0]
    assert rb[0]["step"] < p["rewound_to"] < p["step"] and p["warmup_steps"] == 0, p
    # the ramp's copy was taken before the probe step at or below the chosen rate
    assert lrs[p["rewound_to"]] <= p["lr_after"] * (1 + 1e-9)
    for k, v in seen[p["rewound_to"]].items():
        assert torch.equal(seen[p["step"] + 1][k], v), k
    assert all(lr == pytest.approx(p["lr_after"]) for lr in lrs[p["step"] + 1:])  # no warmup
    assert vals[-1] < 1.25 * good[-1], (vals[-1], good[-1], p)
    _, restored, _, _ = train(data, sgd(3.0), F.mse_loss, mode="heal", epochs=6, seed=seed,
                              thresholds={"probe_rewind_every": 0})
    assert vals[-1] <= 1.02 * restored[-1], (vals[-1], restored[-1])


def test_adam_at_100x_learns_nothing_and_heal_repairs_it():
    """Adam at 0.1 on 4 classes sits at log(4) without a NaN (issue 12): TM317, rollback, probe."""
    data = _classes()
    _, good, _, _ = train(data, adam(1e-3), F.cross_entropy, mode="plain", epochs=10, hidden=128)
    watch, wvals, _, _ = train(data, adam(0.1), F.cross_entropy, mode="watch", epochs=10, hidden=128)
    nl = [f for f in watch.findings if f.code == "TM317"]
    assert nl and nl[0].evidence["level"] > 0.95 * math.log(4) * 0.95
    assert wvals[-1] > 1.3  # the plain run stays near log 4 = 1.386
    medic, vals, _, _ = train(data, adam(0.1), F.cross_entropy, mode="heal", epochs=10, hidden=128)
    rb = actions(medic, "rollback")
    assert rb[0]["reason"] == "TM317" and rb[0]["to_step"] == 0
    probe = actions(medic, "probe")[0]
    assert probe["lr_after"] < 0.02
    assert "rewound_to" not in probe and probe["warmup_steps"] == 50  # Adam: the snapshot and a warmup
    assert vals[-1] < 0.5 * wvals[-1] and vals[-1] < 1.5 * good[-1], (vals, good[-1], probe)


def test_dead_network_is_rolled_back_to_a_snapshot_that_was_learning():
    """A blow-up sends every ReLU of the first hidden layer off (its biases to -1e4): the first layer's
    gradient is exactly zero from then on. Watch names it TM318 (not TM304 vanishing); heal rolls back."""
    data = _regression()

    def kill(t, model, medic):
        if t == 150:
            with torch.no_grad():
                model[0].bias.fill_(-1e4)

    watch, wvals, _, _ = train(data, sgd(0.1), F.mse_loss, mode="watch", epochs=8, on_step=kill)
    dead = [f for f in watch.findings if f.code == "TM318"]
    assert dead and 150 < dead[0].step <= 150 + 12 and dead[0].evidence["since_step"] in (150, 151)
    medic, vals, _, model = train(data, sgd(0.1), F.mse_loss, mode="heal", epochs=8, on_step=kill)
    rb = actions(medic, "rollback")
    assert rb[0]["reason"] == "TM318" and 0 < rb[0]["to_step"] <= 150
    assert (model[0].bias > -100).all()  # the dead weights are gone
    assert vals[-1] < 0.5 * wvals[-1]


def test_a_harmful_rate_raise_is_rolled_back_and_the_old_rate_kept():
    """The loop multiplies Adam's rate by 30 at epoch 4: the loss level rises and stays (TM319)."""
    data = _classes()
    _, good, _, _ = train(data, adam(1e-3), F.cross_entropy, mode="plain", epochs=12, hidden=128)
    _, plain, _, _ = train(data, adam(1e-3), F.cross_entropy, mode="plain", epochs=12, hidden=128, jump=(4, 30))
    medic, vals, lrs, _ = train(data, adam(1e-3), F.cross_entropy, mode="heal", epochs=12, hidden=128,
                                jump=(4, 30))
    jump_step = 4 * 32
    rb = actions(medic, "rollback")
    assert rb, [str(f) for f in medic.findings]
    assert rb[0]["to_step"] <= jump_step and rb[0]["step"] > jump_step
    probe = actions(medic, "probe")[0]
    assert probe["rule"] == "known-good" and probe["lr_after"] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3)
    assert vals[-1] < plain[-1] and vals[-1] < 1.2 * good[-1], (vals, good, plain)


def test_probes_are_bounded_by_their_budget():
    """A fault no rate can repair (the gradients turn NaN at every step from step 60 on): rollbacks and
    probes end at their budgets, TM316 stops the run, and probe steps never exceed max_probes x probe_steps."""
    data = _regression()

    def poison(t, model, medic):
        if t >= 60:
            next(model.parameters()).grad.fill_(float("nan"))

    cfg = {"max_probes": 2, "probe_steps": 12, "max_rollbacks": 4, "snapshot_every": 10}
    medic, _, _, _ = train(data, sgd(0.1), F.mse_loss, mode="heal", epochs=30, on_step=poison, thresholds=cfg)
    assert medic.should_stop and "TM316" in [f.code for f in medic.findings]
    rollbacks = actions(medic, "rollback")
    assert 2 <= len(rollbacks) <= 4
    assert len([a for a in rollbacks if "probe" in a]) <= 2 and len(actions(medic, "probe")) <= 2
    assert 0 < medic.probe_steps <= 2 * 12


def test_a_healthy_run_under_heal_ends_exactly_where_the_plain_loop_ends():
    data = _classes()
    _, plain, _, pm = train(data, adam(1e-3), F.cross_entropy, mode="plain", epochs=4, hidden=128)
    medic, vals, _, hm = train(data, adam(1e-3), F.cross_entropy, mode="heal", epochs=4, hidden=128)
    assert vals == plain
    for p, q in zip(pm.parameters(), hm.parameters()):
        assert torch.equal(p, q)
    assert not actions(medic) and medic.probe_steps == 0
    assert not [f for f in medic.findings if f.severity in ("warning", "error")]


def test_a_probe_in_progress_survives_its_state_dict():
    steer = Steering(Thresholds())
    steer.start(to_step=25, ceiling=1.0, known_good=None, reason="TM305", early=False, step=40)
    for v in (2.0, 1.9, 1.8, 1.8, 1.7):
        steer.observe(v)
    twin = Steering(Thresholds())
    twin.load_state_dict(steer.state_dict())
    assert twin.probing and twin.session.to_step == 25 and twin.probe_steps == 5
    rest = [1.6, 1.5, 1.5, 1.4, 1.6, 2.5, 4.0, 9.0, 20.0, 50.0]
    a = [steer.observe(v) for v in rest]
    b = [twin.observe(v) for v in rest]
    assert a == b
    assert LRProbe.from_state(steer.session.probe.state_dict()).state_dict() == steer.session.probe.state_dict()

"""The Medic on real tiny models: each run-time code, rollback exactness, reports, bad input."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from trainmedic import Medic, Thresholds
from trainmedic.rules import runtime as rt
from trainmedic.zoo._common import batches, mlp, regression_data


def _loop(medic, model, opt, steps, x, y, loss_fn=None, before_step=None, batch=32, seed=0):
    loss_fn = loss_fn or nn.functional.mse_loss
    g = torch.Generator().manual_seed(seed)
    t = 0
    while t < steps:
        for xb, yb in batches(x, y, batch, g):
            if t >= steps:
                break
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if before_step:
                before_step(t, model)
            medic.step(loss)
            t += 1


def test_rollback_restores_weights_optimizer_and_lr_bit_for_bit():
    torch.manual_seed(0)
    x, y = regression_data(n=512)
    model = mlp(16, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # probe_steps=0: the rollback halves the rate (the probe after a rollback: tests/test_heal_probe.py)
    medic = Medic(model, opt, mode="heal", console=False, thresholds={"snapshot_every": 10, "probe_steps": 0})
    states = {}

    def poison(t, m):
        # Record the state each step starts from; poison the gradients of steps 40-42.
        states[t] = ({k: v.clone() for k, v in m.state_dict().items()},
                     {k: {n: v.clone() for n, v in s.items() if torch.is_tensor(v)} for k, s in opt.state.items()},
                     opt.param_groups[0]["lr"])
        if 40 <= t <= 42:
            next(m.parameters()).grad.fill_(float("nan"))

    _loop(medic, model, opt, 43, x, y, before_step=poison)
    rb = [e for e in medic.events if e.get("action") == "rollback"]
    assert len(rb) == 1 and rb[0]["step"] == 42 and rb[0]["reason"] == "TM302"
    to = rb[0]["to_step"]
    assert to <= 40
    weights, moments, lr = states[to]
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for p, saved in zip(model.parameters(), moments.values()):
        live = opt.state[p]
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(live[name], saved[name]), name
    assert opt.param_groups[0]["lr"] == pytest.approx(lr * 0.5)
    assert [e["action"] for e in medic.events if e["type"] == "action"] == ["skip-step"] * 3 + ["rollback"]


def test_nonfinite_grad_names_the_parameters_and_skips_in_heal():
    torch.manual_seed(0)
    x, y = regression_data(n=256)

    class Dist(nn.Module):
        """Euclidean distance between a learned point and the input: sqrt has an infinite slope at 0."""

        def __init__(self):
            super().__init__()
            self.center = nn.Parameter(torch.zeros(16))
            self.head = nn.Linear(1, 1)

        def forward(self, xb):
            d = ((xb - self.center) ** 2).sum(-1, keepdim=True).sqrt()
            return self.head(d)

    model = Dist()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, mode="heal", console=False)
    x[5] = 0.0  # a row exactly at the center: finite loss, NaN gradient through sqrt(0)
    before = model.center.detach().clone()
    loss = nn.functional.mse_loss(model(x[:8]), y[:8])
    loss.backward()
    assert math.isfinite(loss.item())
    applied = medic.step(loss)
    assert not applied
    f = medic.findings[0]
    assert f.code == "TM302" and f.step == 0
    assert "center" in f.evidence["parameters"]
    assert torch.equal(model.center.detach(), before)  # the step was not applied


def test_stalled_updates_on_a_vanishing_learning_rate():
    torch.manual_seed(0)
    x, y = regression_data(n=512)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-10)
    medic = Medic(model, opt, console=False)
    _loop(medic, model, opt, 120, x, y)
    f = next(f for f in medic.findings if f.code == "TM312")
    assert 75 <= f.step <= 120
    assert f.evidence["update_ratio"] < 1e-7


def test_oscillation_from_unshuffled_alternating_batches_is_reported_and_healed():
    """Unshuffled data: batches alternate between two groups, and each step undoes part of the last."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    a, b = x[:32], x[32:] * 1.5
    ya, yb = torch.zeros(32, 1), torch.ones(32, 1) * 4

    def run(mode):
        torch.manual_seed(0)
        model = nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        medic = Medic(model, opt, mode=mode, console=False)
        for t in range(200):
            xb, yt = (a, ya) if t % 2 == 0 else (b, yb)
            loss = nn.functional.mse_loss(model(xb), yt)
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        return medic

    watch = run("watch")
    f = next(f for f in watch.findings if f.code == "TM307")
    assert f.evidence["alternation"] >= 0.9
    heal = run("heal")
    changes = [e for e in heal.events if e.get("action") == "lr-change" and e["reason"] == "TM307"]
    assert changes and changes[0]["lr_after"] == pytest.approx(0.025)


def _amp_run(inject_steps, steps=60):
    torch.manual_seed(0)
    x, y = regression_data(n=512)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    medic = Medic(model, opt, scaler=scaler, console=False)
    g = torch.Generator().manual_seed(0)
    t = 0
    for xb, yb in batches(x, y, 16, g):
        if t >= steps:
            break
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        scaler.scale(loss).backward()
        if t in inject_steps:
            model[0].weight.grad[0, 0] = float("inf")  # an fp16 overflow, as the scaler would see it
        medic.step(loss)
        t += 1
    return medic, scaler


def test_occasional_gradscaler_skip_is_normal():
    medic, scaler = _amp_run({10, 30})
    assert medic.findings == []
    assert scaler.get_scale() == 65536.0 / 4


def test_gradscaler_that_keeps_skipping_is_reported():
    medic, _ = _amp_run(set(range(20, 40)))
    f = next(f for f in medic.findings if f.code == "TM314")
    assert f.step == 20 + 8 - 1
    assert f.evidence["consecutive_skips"] >= 8


def test_intentional_accumulation_is_silent_but_forgotten_zero_grad_is_not():
    torch.manual_seed(0)
    x, y = regression_data(n=512)
    for accumulate, zero in ((4, True), (1, False)):
        model = mlp(16, 1)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        medic = Medic(model, opt, console=False)
        g = torch.Generator().manual_seed(0)
        for i, (xb, yb) in enumerate(batches(x, y, 16, g)):
            nn.functional.mse_loss(model(xb), yb).backward()
            if (i + 1) % accumulate == 0:
                medic.step(nn.functional.mse_loss(model(xb), yb).detach())
                if zero:
                    opt.zero_grad()
        codes = [f.code for f in medic.findings]
        assert ("TM310" in codes) == (not zero), (accumulate, zero, codes)


def test_heal_zeroes_stale_gradients_after_tm310():
    torch.manual_seed(0)
    x, y = regression_data(n=256)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, mode="heal", console=False)
    for xb, yb in batches(x, y, 32, torch.Generator().manual_seed(0)):
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()  # no zero_grad anywhere
        medic.step(loss)
    assert medic.findings[0].code == "TM310" and medic.findings[0].step == 2
    assert any(e.get("action") == "zero-grad" for e in medic.events)
    assert all(p.grad is None for p in model.parameters())


def test_save_report_writes_the_documented_formats(tmp_path):
    from trainmedic.zoo import nan_log

    res = nan_log.train(mode="heal")
    out = res.medic.save_report(tmp_path / "run")
    doc = json.loads((out / "findings.json").read_text())
    assert doc["version"] == 1
    f = doc["findings"][0]
    assert set(f) == {"code", "name", "severity", "step", "epoch", "message", "evidence", "action"}
    assert f["code"] == "TM301" and f["name"] == "nonfinite-loss" and f["severity"] == "error"
    assert f["evidence"]["count"] >= 1 and f["action"] == "step skipped"
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "meta" and lines[0]["mode"] == "heal"
    kinds = {e["type"] for e in lines}
    assert {"finding", "action", "epoch", "sample"} <= kinds
    assert (out / "report.html").exists()


def test_state_dict_round_trip_continues_the_same_history():
    torch.manual_seed(0)
    x, y = regression_data(n=512)
    model = mlp(16, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    medic = Medic(model, opt, console=False)
    _loop(medic, model, opt, 40, x, y)
    medic.end_epoch(val_loss=0.5)
    state = json.loads(json.dumps(medic.state_dict()))  # must survive serialization
    other = Medic(model, opt, console=False)
    other.load_state_dict(state)
    assert other.step_count == 40 and other.epoch == 1
    assert other.history.as_dicts() == medic.history.as_dicts()
    assert np.array_equal(other.monitor.step_window.losses.values(), medic.monitor.step_window.losses.values())


@pytest.mark.parametrize("bad, match", [
    (lambda loss: loss.item(), "not `loss.item"),
    (lambda loss: loss.expand(4), "scalar loss"),
])
def test_step_rejects_a_loss_that_is_not_a_scalar_tensor(bad, match):
    model = nn.Linear(2, 1)
    medic = Medic(model, torch.optim.SGD(model.parameters(), lr=0.1), console=False)
    loss = model(torch.ones(1, 2)).sum()
    with pytest.raises((TypeError, ValueError), match=match):
        medic.step(bad(loss))


def test_model_without_trainable_parameters_is_a_clear_error():
    model = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Medic(model, torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1))


def test_optimizer_without_param_groups_is_a_clear_error():
    class NotAnOptimizer:
        param_groups = []

    with pytest.raises(ValueError, match="no param_groups"):
        Medic(nn.Linear(2, 1), NotAnOptimizer())


def test_unknown_threshold_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown threshold"):
        Medic(nn.Linear(2, 1), torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), thresholds={"nope": 1})


def test_a_failing_callback_is_disabled_and_recorded_not_raised():
    from trainmedic.callbacks import MedicCallback

    class Broken(MedicCallback):
        name = "broken"

        def on_step_end(self, medic, step, applied):
            raise RuntimeError("boom")

    torch.manual_seed(0)
    x, y = regression_data(n=128)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, console=False, callbacks=[Broken()])
    _loop(medic, model, opt, 5, x, y)
    assert [f.code for f in medic.findings] == ["TM901"]
    assert "boom" in medic.findings[0].message and medic.step_count == 5


def test_one_device_to_host_sync_per_step(monkeypatch):
    """The per-step path copies to the host once: count Tensor.tolist/item calls inside medic.step. The live
    wiring and data checks of the first steps (and every EVERY-th) may copy a little more, never in between."""
    from trainmedic.observe.live import due

    torch.manual_seed(0)
    x, y = regression_data(n=256)
    model = mlp(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    medic = Medic(model, opt, console=False)
    calls = {"n": 0}
    for name in ("tolist", "item", "cpu", "numpy"):
        orig = getattr(torch.Tensor, name)

        def counting(self, *a, _orig=orig, **k):
            calls["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counting)
    for t, (xb, yb) in enumerate(batches(x, y, 8, torch.Generator().manual_seed(0))):
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        calls["n"] = 0
        medic.step(loss)
        if due(t):
            assert 1 <= calls["n"] <= 4, f"step {t}: {calls['n']} syncs"
        else:
            assert calls["n"] == 1, f"step {t}: {calls['n']} syncs"


# ----- detectors on recorded traces (pure functions) ---------------------------------------------------
CFG = Thresholds()


def test_transient_loss_spike_that_comes_down_is_not_reported():
    rng = np.random.default_rng(0)
    losses = 0.5 + 0.02 * rng.standard_normal(200)
    losses[150:153] = 5.0  # three bad batches, then back to normal
    steps = np.arange(200)
    for end in range(60, 200):
        assert rt.detect_loss_spike(losses[:end][-128:], steps[:end][-128:], 1.0, 0.5, CFG) is None


def test_persistent_jump_is_reported_with_its_onset():
    rng = np.random.default_rng(0)
    losses = 0.5 + 0.02 * rng.standard_normal(200)
    losses[150:] += 1.5
    steps = np.arange(200)
    # The Medic runs the detector every few steps; the first window that sees the jump persist fires.
    hits = [(end, rt.detect_loss_spike(losses[:end][-128:], steps[:end][-128:], 2.0, 0.5, CFG))
            for end in range(60, 200)]
    end, det = next((e, d) for e, d in hits if d is not None)
    assert det.onset == 150 and end <= 150 + CFG.spike_persist + 1


def test_minibatch_noise_is_not_oscillation():
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert rt.detect_oscillation(1.0 + 0.5 * rng.standard_normal(64), CFG) is None


def test_divergence_needs_both_ratio_and_lost_progress():
    # A loss near zero that doubles is noise, not divergence: the progress made was from 2.0 to 0.001.
    assert rt.detect_divergence(0.005, 0.001, 10, 2.0, CFG) is None
    assert rt.detect_divergence(8.0, 1.5, 10, 2.3, CFG) is not None


def test_gan_loop_with_two_optimizers_is_not_stale():
    """The generator's backward also fills the discriminator's gradients after its step; the loop resets
    them before the discriminator's own backward, so nothing is stale (TM310 must stay silent)."""
    torch.manual_seed(0)
    G, D = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    med_g, med_d = Medic(G, opt_g, console=False), Medic(D, opt_d, console=False)
    bce = nn.functional.binary_cross_entropy_with_logits
    for _ in range(60):
        real, z = torch.randn(32, 2) + 2, torch.randn(32, 4)
        fake = G(z)
        d_loss = bce(D(real), torch.ones(32, 1)) + bce(D(fake.detach()), torch.zeros(32, 1))
        opt_d.zero_grad()
        d_loss.backward()
        med_d.step(d_loss)
        g_loss = bce(D(fake), torch.ones(32, 1))
        opt_g.zero_grad()
        g_loss.backward()  # reaches D's parameters too
        med_g.step(g_loss)
    assert "TM310" not in [f.code for f in med_d.findings + med_g.findings]


def test_heal_budget_exhausted_sets_should_stop():
    """A learning rate far past divergence: each rollback halves it, the budget runs out, TM316 stops."""
    torch.manual_seed(0)
    x, y = regression_data()
    model = nn.Linear(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=500.0)
    # probe_steps=0: halving (a probe would find a working rate here; its budget: tests/test_heal_probe.py)
    medic = Medic(model, opt, mode="heal", console=False, thresholds={"max_rollbacks": 2, "probe_steps": 0})
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        for xb, yb in batches(x, y, 256, g):
            loss = nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        medic.end_epoch()
        if medic.should_stop:
            break
    assert medic.should_stop
    codes = [f.code for f in medic.findings]
    assert "TM316" in codes
    assert sum(e.get("action") == "rollback" for e in medic.events) == 2

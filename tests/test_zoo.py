"""Each zoo script trains a real model into its fault; trainmedic must name it, and stay silent on health."""

import pytest

from trainmedic.zoo import CASES

FAULTS = [c for c in CASES if not c.control]
CONTROLS = [c for c in CASES if c.control]

# Where (in optimizer steps) each fault must be first reported; the fault's own onset is in the docstring.
STEP_WINDOWS = {
    "lr_too_high": (2, 60),  # lr 2.0 blows up from the first step (2.3 -> 3.5e3 by step 3), NaN in a few dozen
    "lr_too_low": (200, 200),  # judged once, at the end of the slow_window
    "forgot_zero_grad": (1, 3),  # the second step already finds stale gradients
    "nan_log": (0, 200),
    "rebound": (256, 300),  # the lr jump happens at step 256 (epoch 4)
    "grad_spike": (50, 50),  # the first corrupted batch is step 50
    "plateau": (320, 1280),
    "overfitting": (9, 60),
    "vanishing": (50, 60),
    "dirty_rows": (0, 40),
}


@pytest.mark.parametrize("case", FAULTS, ids=lambda c: c.module)
def test_fault_is_detected_in_its_window(case):
    res = case.load().train(mode="watch")
    found = [f for f in res.medic.findings if f.code in case.expect]
    assert found, f"{case.module}: expected one of {sorted(case.expect)}, got {res.codes}"
    first = min(found, key=lambda f: f.step)
    lo, hi = STEP_WINDOWS[case.module]
    assert lo <= first.step <= hi, f"{case.module}: {first.code} at step {first.step}, expected {lo}..{hi}"
    assert first.message and first.evidence


@pytest.mark.parametrize("case", CONTROLS + FAULTS, ids=lambda c: c.module)
def test_healthy_runs_raise_no_warning(case):
    """Controls, and every fault script run without its fault: no warning or error at all."""
    mod = case.load()
    for mode in ("watch", "heal"):
        res = mod.train(mode=mode, fault=False)
        assert res.problems() == [], f"{case.module} ({mode}, no fault): {[str(f) for f in res.medic.findings]}"
        # Reducing the lr on a plateau (TM308, info) is what ReduceLROnPlateau would do; nothing else may act.
        acted = [e for e in res.medic.events if e["type"] == "action" and e["reason"] != "TM308"]
        assert not acted, f"{case.module}: heal acted on a healthy run: {acted[:3]}"


@pytest.mark.parametrize("case", [c for c in FAULTS if c.healable], ids=lambda c: c.module)
def test_heal_recovers_within_10_percent_of_healthy(case):
    mod = case.load()
    healthy = mod.train(mode="watch", fault=False)
    healed = mod.train(mode="heal")
    metric = (lambda r: r.val_loss) if healthy.val_loss is not None else (lambda r: r.final_loss)
    assert metric(healed) <= 1.10 * metric(healthy), (
        f"{case.module}: heal {metric(healed):.4g} vs healthy {metric(healthy):.4g}; {healed.codes}")
    actions = [e["action"] for e in healed.medic.events if e["type"] == "action"]
    assert actions, "heal should have acted"


def test_rollbacks_are_listed_for_lr_too_high_and_rebound():
    for name in ("lr_too_high", "rebound"):
        res = next(c for c in CASES if c.module == name).load().train(mode="heal")
        rollbacks = [e for e in res.medic.events if e.get("action") == "rollback"]
        assert rollbacks, name
        for rb in rollbacks:
            assert rb["to_step"] < rb["step"]
            assert rb["lr_after"] < rb["lr_before"]


def test_watch_mode_changes_nothing():
    """Watch mode must train exactly like the plain loop: same final loss, bit for bit."""
    import torch

    from trainmedic.zoo import _common, healthy_plain

    res = healthy_plain.train(mode="watch", epochs=2)
    torch.manual_seed(0)
    x, y = _common.regression_data(seed=0)
    model = _common.mlp(x.shape[1], 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for xb, yb in _common.batches(x, y, 32, g):
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p, q in zip(model.parameters(), res.medic.model.parameters()):
        assert torch.equal(p, q)

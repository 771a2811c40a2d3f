"""Heal's early stop (TM309) on a real overfitting run: the rate is lowered once first (a rate too high
rises like overfitting, issue 12), then the run is stopped, the best evaluation's weights are restored
exactly, and the stop says what it saved."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from trainmedic import Medic
from trainmedic.zoo._common import batches, mlp, regression_data


def overfit(mode: str, epochs: int = 60):
    """The zoo's overfitting case: a wide MLP memorizes 96 noisy rows; weights recorded after each epoch."""
    torch.manual_seed(0)
    x, y = regression_data(n=96, seed=0, noise=0.5)
    xv, yv = regression_data(n=512, seed=0, noise=0.5, split="val")
    model = mlp(x.shape[1], 1, hidden=256)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    medic = Medic(model, opt, mode=mode, console=False)
    g = torch.Generator().manual_seed(0)
    vals, weights, lrs = [], [], []
    for _ in range(epochs):
        for xb, yb in batches(x, y, 32, g):
            loss = F.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        with torch.no_grad():
            vals.append(float(F.mse_loss(model(xv), yv)))
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        lrs.append(opt.param_groups[0]["lr"])
        medic.end_epoch(val_loss=vals[-1])
        if medic.should_stop:
            break
    with torch.no_grad():
        final = float(F.mse_loss(model(xv), yv))
    return medic, vals, weights, lrs, model, final


def test_overfitting_stop_lowers_the_rate_once_then_restores_the_best_weights_and_reports_what_it_saved():
    medic, vals, weights, lrs, model, final = overfit("heal")
    events = [e for e in medic.events if e["type"] == "action"]
    cut = [e for e in events if e["action"] == "lr-change" and e["reason"] == "TM309"]
    restore = [e for e in events if e["action"] == "restore-best"]
    assert len(cut) == 1 and cut[0]["lr_after"] == cut[0]["lr_before"] * 0.1
    assert cut[0]["restored_epoch"] is not None
    # the cut starts a new plateau window: the evaluations before it (another rate, other weights) do not
    # make a plateau right after it
    cooldown = medic.cfg.plateau_cooldown
    assert all(e["epoch"] > cut[0]["epoch"] + cooldown for e in events
               if e["reason"] == "TM308" and e["action"] == "lr-change")
    # the run then ends stopped - by a second overfitting stop, or by a plateau at the smallest rate heal
    # may use (early stopping, not an exhausted heal: no TM316 error) - and either way on the best
    # evaluation's weights, with what the stop saved
    assert medic.should_stop and len(restore) == 1 and restore[0]["reason"] in ("TM309", "TM308")
    assert not [f for f in medic.findings if f.code == "TM316"]
    assert restore[0]["last_epoch"] > cut[0]["epoch"]  # stopped only after the cut
    best = restore[0]["epoch"]
    assert restore[0]["best_value"] == min(vals) == vals[best]
    assert restore[0]["last_value"] == vals[-1] > vals[best]
    assert restore[0]["epochs_undone"] == len(vals) - 1 - best
    # the weights the run ends with are the best evaluation's, bit for bit
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[best][k]), k
    assert final == vals[best]

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
import torch
from sklearn.datasets import load_breast_cancer

from trainmedic import Medic


def _two_heads(seed: int, epochs: int) -> Medic:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    area = x[:, 3].copy()
    x = np.delete(x, 3, axis=1)
    labels = data.target.astype(np.float32)
    order = rng.permutation(len(x))
    tr, va = order[:450], order[450:]
    x = (x - x[tr].mean(0)) / x[tr].std(0)
    area = (area - area[tr].mean()) / area[tr].std()
    tx, vx = torch.from_numpy(x[tr]), torch.from_numpy(x[va])
    tc, tr_area, va_area = torch.from_numpy(labels[tr]), torch.from_numpy(area[tr]), torch.from_numpy(area[va])
    trunk = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.Tanh(), torch.nn.Linear(64, 32),
                                torch.nn.Tanh())
    cls_head, reg_head = torch.nn.Linear(32, 1), torch.nn.Linear(32, 1)
    model = torch.nn.ModuleList([trunk, cls_head, reg_head])
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True)
    bce, mse = torch.nn.BCEWithLogitsLoss(), torch.nn.MSELoss()
    medic = Medic(model, opt, console=False)
    for _ in range(epochs):
        idx = torch.from_numpy(rng.permutation(len(tx)))
        for b in torch.split(idx, 32):
            h = trunk(tx[b])
            loss = bce(cls_head(h).squeeze(-1), tc[b]) + 0.5 * mse(reg_head(h).squeeze(-1), tr_area[b])
            opt.zero_grad()
            loss.backward()
            medic.step(loss)
        with torch.no_grad():
            medic.end_epoch(val_loss=float(mse(reg_head(trunk(vx)).squeeze(-1), va_area)))
    medic.close()
    return medic


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

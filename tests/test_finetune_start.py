"""A run that starts from trained weights (a fine-tune, a resumed run with a fresh optimizer) is not "not
learning" because its loss stays near its start: it has little left to learn. TM317 used to fire on such
runs (the start level read as "a network that learned nothing") and heal's rollback then made them worse.

* a classifier trained 4 epochs, continued with a fresh Adam at the same rate: no finding, and heal ends
  bit for bit where the plain loop ends (seeds 0 and 3 got a false TM317 before);
* continued at 30x the rate, the first steps throw the loss above the constant-prediction level (what the
  weights knew is lost): TM317 still fires, and heal's rollback and probe end below the plain run.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from trainmedic import Medic


def _data(seed: int):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=1536, n_features=20, n_informative=12, n_redundant=4, n_classes=4,
                               n_clusters_per_class=3, flip_y=0.03, class_sep=1.5, random_state=seed)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return x[:1024], y[:1024], x[1024:], y[1024:]


def _epochs(model, opt, data, epochs, seed, medic=None):
    x, y, xv, yv = data
    vals = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, len(x) - 31, 32):
            xb, yb = x[order[i:i + 32]], y[order[i:i + 32]]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            if medic is None:
                opt.step()
            else:
                medic.step(loss, batch=(xb, yb))
        model.eval()
        with torch.no_grad():
            vals.append(float(F.cross_entropy(model(xv), yv)))
        if medic is not None:
            medic.end_epoch(val_loss=vals[-1])
    return vals


def fine_tune(seed: int, mult: float, mode: str | None):
    """Pre-train 4 epochs at 1e-3, then 4 epochs with a fresh Adam at ``mult`` x 1e-3."""
    torch.manual_seed(seed)
    data = _data(seed)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))
    _epochs(model, torch.optim.Adam(model.parameters(), lr=1e-3), data, 4, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3 * mult)
    medic = None if mode is None else Medic(model, opt, mode=mode, console=False, loss_fn=F.cross_entropy)
    vals = _epochs(model, opt, data, 4, seed + 100, medic)
    return medic, model, vals


@pytest.mark.parametrize("seed", [0, 3])
def test_a_fine_tune_at_its_rate_gets_no_finding_and_heal_leaves_it_alone(seed):
    _, m_plain, plain = fine_tune(seed, 1, None)
    medic, m_heal, healed = fine_tune(seed, 1, "heal")
    assert [f.code for f in medic.findings if f.severity != "info"] == []
    assert healed == plain
    assert all(torch.equal(a, b) for a, b in zip(m_plain.state_dict().values(), m_heal.state_dict().values()))


def test_a_fine_tune_at_30x_still_gets_tm317_and_heal_repairs_it():
    _, _, plain = fine_tune(0, 30, None)
    medic, _, healed = fine_tune(0, 30, "heal")
    assert "TM317" in {f.code for f in medic.findings}
    assert healed[-1] < 0.9 * plain[-1], (healed, plain)

"""TM205's depth check leaves out every head, not only the last layer called.

Found by a new user's audit (benchmarks/fresh): `trainmedic fit` on sklearn's wine table warned TM205
poor-init about fit's own network. That network is wide-and-deep (`deep(x) + wide(x)`): its skip layer is
called after the deep stack's head, so the head (3 outputs) was judged as a hidden layer and its small
output read as activations shrinking 10x at init. A model with two heads has the same trap.
"""

import torch
from torch import nn

import trainmedic
from trainmedic import Medic
from trainmedic.tabular.models import MLPConfig, build_mlp


def _wine_like(seed, n=96, d=13, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def _train(model, x, y, steps=30):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    with Medic(model, opt, mode="watch", loss_fn=loss_fn, console=False) as medic:
        for _ in range(steps):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(x, y))
            losses.append(loss.item())
    return medic, losses


def test_fit_network_at_its_default_init_is_not_poor_init():
    # seed 13 is one where the head's output std, judged as a hidden layer, crossed the 10x bar on main
    for seed in (13, 0, 1):
        torch.manual_seed(seed)
        model = build_mlp(13, 3, MLPConfig())
        x, y = _wine_like(seed)
        medic, losses = _train(model, x, y)
        assert losses[-1] < losses[0]  # a healthy network: it learns
        assert "TM205" not in [f.code for f in medic.findings], (seed, [f.message for f in medic.findings])


def test_a_wide_and_deep_network_that_truly_shrinks_is_still_poor_init():
    torch.manual_seed(13)
    model = build_mlp(13, 3, MLPConfig())
    with torch.no_grad():  # hidden layers at a fifth of the default scale: activations shrink 16x and more
        model.deep[3].weight.mul_(0.2)
    x, y = _wine_like(13)
    medic, _ = _train(model, x, y, steps=3)
    assert "TM205" in [f.code for f in medic.findings]


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.a = nn.Linear(64, 3)
        self.b = nn.Linear(64, 1)

    def forward(self, x):
        h = self.trunk(x)
        return self.a(h), self.b(h)


def test_two_heads_are_both_heads():
    torch.manual_seed(0)
    model = TwoHeads()
    with torch.no_grad():  # head a (called first) starts tiny, as a zero-ish init of a classifier head does
        model.a.weight.mul_(0.01)
    x, y = _wine_like(0)

    def loss_fn(out, y):
        return nn.functional.cross_entropy(out[0], y) + out[1].pow(2).mean()

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    assert [i.code for i in trainmedic.preflight(model, loss_fn, (x, y), opt)] == []

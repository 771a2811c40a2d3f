"""Pre-flight on a model whose layers use ``nn.utils.parametrizations.weight_norm``: the script's stderr
gets nothing from trainmedic (reading ``.grad`` of the computed weight printed torch's UserWarning there,
benchmarks/fresh3 gaussnll_hetero); the gradient check reads weight_norm's direction tensor instead."""

import warnings

import torch
from torch.nn.utils.parametrizations import weight_norm

from trainmedic import Medic


def test_weight_norm_layers_are_read_without_a_warning():
    torch.manual_seed(0)
    net = torch.nn.Sequential(weight_norm(torch.nn.Linear(6, 32)), torch.nn.ReLU(), weight_norm(torch.nn.Linear(32, 1)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        medic = Medic(net, opt, console=False, loss_fn=torch.nn.functional.mse_loss)
        for _ in range(3):
            loss = torch.nn.functional.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            medic.step(loss, batch=(x, y))
    assert [str(w.message) for w in caught] == []
    assert not [f for f in medic.findings if f.severity in ("warning", "error")]

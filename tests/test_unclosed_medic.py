"""A Medic nobody closes leaves nothing behind in the process once it is collected.

The live checks arm a *global* module forward hook on the steps they observe (every module of the process
then runs it, and takes nn.Module's slower call path), and every collector wraps ``torch.nn.utils``' clip
functions while it lives. A script or notebook that drops a Medic without ``close()`` must not keep either.
"""

from __future__ import annotations

import gc

import torch
from torch.nn.modules import module as nn_module

from trainmedic import Medic
from trainmedic.signals import clipping


def train_without_close(steps: int) -> Medic:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    medic = Medic(model, opt, console=False)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        medic.step(loss)  # checks and steps; the live checks arm for the next observed forward
    return medic


def test_dropped_medic_releases_global_hooks_and_clip_watch() -> None:
    gc.collect()
    hooks_before = len(nn_module._global_forward_hooks)
    watchers_before = clipping.watchers()
    medic = train_without_close(steps=2)
    assert len(nn_module._global_forward_hooks) > hooks_before, "the live checks did not arm: nothing tested"
    watching = clipping.watchers()
    assert watching == watchers_before + 1
    del medic
    gc.collect()
    assert len(nn_module._global_forward_hooks) <= hooks_before  # other tests' dropped Medics may go too
    assert clipping.watchers() <= watching - 1

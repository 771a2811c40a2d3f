"""TM202 on ``F.kl_div`` fed probabilities: PyTorch leaves no loss node for kl_div (it computes
``xlogy(t, t) - t * input`` and reduces), so the graph reader recognizes the formula. Checked on a real
distillation with a plain ``medic.step(loss)`` (the graph read after backward: only the op that fed the
loss is left) and on the graph read before backward (the target too); healthy twins and a look-alike
hand-written loss stay silent."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from trainmedic import Medic
from trainmedic.observe.graph import read_loss_graph


def distill(probs: bool, steps: int = 40) -> list:
    torch.manual_seed(0)
    x = torch.randn(512, 8)
    teacher = torch.nn.Linear(8, 4)
    student = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    medic = Medic(student, opt, console=False)
    for i in range(steps):
        xb = x[(i * 32) % 512:(i * 32) % 512 + 32]
        with torch.no_grad():
            soft = F.softmax(teacher(xb) / 2, dim=1)
        logits = student(xb) / 2
        inp = F.softmax(logits, dim=1) if probs else F.log_softmax(logits, dim=1)
        loss = F.kl_div(inp, soft, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        medic.step(loss)
    return medic.findings


def test_medic_names_kl_div_on_probabilities_from_the_graph_alone():
    found = [f for f in distill(True) if f.code == "TM202"]
    assert found and "log_softmax" in found[0].message and found[0].evidence["origin"] == "softmax"
    assert found[0].step == 0
    assert [f.code for f in distill(False) if f.severity in ("warning", "error")] == []


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
def test_graph_reads_kl_div_and_its_target_before_backward(reduction):
    p = torch.randn(6, 3, requires_grad=True)
    t = torch.softmax(torch.randn(6, 3), dim=1)
    with warnings.catch_warnings():  # reduction="mean": PyTorch warns that it is not the KL divergence
        warnings.simplefilter("ignore")
        g = read_loss_graph(F.kl_div(torch.softmax(p, dim=1), t, reduction=reduction))
    kl = [c for c in g.calls if c.name == "kl_div"]
    assert len(kl) == 1 and kl[0].origin == "softmax"
    # the product saves the target (the input's gradient needs it), not the input
    assert torch.equal(kl[0].target, t) and kl[0].input_shape == (6, 3)


def test_look_alike_losses_are_not_kl_div():
    p = torch.randn(6, 3, requires_grad=True)
    t = torch.softmax(torch.randn(6, 3), dim=1)
    soft_accuracy = 1 - (t * torch.softmax(p, dim=1)).sum(1).mean()  # a reduction between the sub and the product
    both_sides = (p.sigmoid() - p.tanh() * p).mean()  # the left side carries gradient
    for loss in (soft_accuracy, both_sides):
        assert [c for c in read_loss_graph(loss).calls if c.name == "kl_div"] == []

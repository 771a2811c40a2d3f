"""Units that no optimizer step can tell apart: a symmetric init (TM205), named at the first step.

A layer whose units are identical (every row of its weight equal, e.g. all zero, and its bias entries
equal) computes the same value in every unit. Whether that is harmful depends on the gradient: the units
of a zero-initialised *last* layer, a LoRA ``B`` matrix or a residual branch's output projection receive
different gradients (each output unit sees its own error), so the first step already breaks the tie. The
units of a hidden layer whose downstream weights treat them alike (all zero too, or constant) receive
identical gradients, so every elementwise optimizer (SGD, momentum, Adam, weight decay) moves them
identically: they stay one unit forever, and the layer trains as if it had width 1. That is the
all-zero (or constant) init of a whole network, and it is visible at the first step, before any windowed
rule can see that the loss does not fall.

The test is exact equality: parameter slices along the first dimension equal, and the slices of their
gradient equal, at the step whose gradients are ready. Healthy symmetric starts fail it on the gradient;
embeddings (rows of unseen tokens stay equal by design) and 1-D parameters (biases, norms) are not
judged. It reads each trained parameter once, at the first step only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from trainmedic.preflight import Issue


def _equal_rows(t: torch.Tensor) -> bool:
    """Every slice of ``t`` along its first dimension equals the first (the second one checked first: cheap)."""
    return bool(torch.equal(t[1], t[0])) and bool(torch.equal(t, t[:1].expand_as(t)))


def symmetric_units(model: nn.Module, trained: Iterable[Any] | None = None) -> list[dict[str, Any]]:
    """The trained parameters (>= 2-D, at least two units, with a gradient) whose units and gradients are
    all identical; ``trained``: the parameters the optimizer holds (default: every one requiring grad)."""
    held = None if trained is None else {id(p) for p in trained}
    embedded = {id(p) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
                for p in m.parameters(recurse=False)}
    out = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad or p.dim() < 2 or p.shape[0] < 2 or id(p) in embedded:
                continue
            if held is not None and id(p) not in held:
                continue
            g = p.grad
            if g is None or g.shape != p.shape or not _equal_rows(p) or not _equal_rows(g):
                continue
            if not bool(torch.isfinite(g).all()):
                continue  # an overflowing scaled gradient (AMP) says nothing about the units
            out.append({"parameter": name, "units": int(p.shape[0]), "value": float(p.flatten()[0]),
                        "gradient": float(g.flatten()[0])})
    return out


def symmetric_units_issue(model: nn.Module, trained: Iterable[Any] | None = None) -> Issue | None:
    """TM205 when at least one trained layer starts with identical units that receive identical gradients."""
    rows = symmetric_units(model, trained)
    if not rows:
        return None
    first = rows[0]
    zero = all(r["value"] == 0.0 for r in rows)
    init = "all-zero" if zero else "constant"
    more = f" (and {len(rows) - 1} more: {', '.join(r['parameter'] for r in rows[1:4])}" + \
        (" ..." if len(rows) > 4 else "") + ")" if len(rows) > 1 else ""
    return Issue("TM205", f"the {first['units']} units of {first['parameter']} start identical (every row "
                 f"{'zero' if first['value'] == 0.0 else 'equal'}) and receive identical gradients{more}: no "
                 "optimizer step can tell them apart, so each such layer trains as a single unit; an "
                 f"{init} init breaks no symmetry (draw the weights at random: PyTorch's default, Kaiming or "
                 "Xavier; zeros only for a last layer or a residual branch's output)",
                 {"measure": "identical units", "layers": rows[:20], "count": len(rows), "init": init},
                 "TM205:symmetric")

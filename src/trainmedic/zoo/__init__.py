"""The pathology zoo: small, realistic training scripts, one per run-time fault, plus healthy controls.

Each module is a complete script (``python -m trainmedic.zoo.lr_too_high --heal``; also reachable as
``examples/zoo/``) with a ``train(mode, fault=True, seed=0)`` function. ``fault=False`` runs the same
script without its fault: the healthy baseline the heal run is compared with, and one more control that
must stay silent. ``CASES`` below is the table the tests, ``benchmarks/zoo.py`` and ``trainmedic demo``
share: which codes each case must raise, and whether heal is expected to recover.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    module: str
    title: str
    expect: frozenset[str]  # codes of which at least one must be raised in watch mode
    healable: bool = False  # heal should end within 10 % of the healthy baseline's final loss
    control: bool = False  # a healthy control: no warning or error allowed

    def load(self):
        return importlib.import_module(f"trainmedic.zoo.{self.module}")


CASES: tuple[Case, ...] = (
    Case("lr_too_high", "learning rate too high", frozenset({"TM305", "TM301", "TM306"}), healable=True),
    Case("lr_too_low", "learning rate too low", frozenset({"TM315", "TM312"})),
    Case("forgot_zero_grad", "forgotten zero_grad()", frozenset({"TM310"}), healable=True),
    Case("nan_log", "log of a non-positive prediction", frozenset({"TM301"})),
    Case("rebound", "loss rebound after a learning-rate jump", frozenset({"TM306", "TM305"}), healable=True),
    Case("grad_spike", "corrupted batches blow up the gradient", frozenset({"TM303"}), healable=True),
    Case("plateau", "plateau at a too-high learning rate", frozenset({"TM308"})),
    Case("overfitting", "overfitting a small data set", frozenset({"TM309"})),
    Case("vanishing", "deep sigmoid net, vanishing gradients", frozenset({"TM304"})),
    Case("dirty_rows", "dirty rows in a CSV", frozenset({"TM301"})),
    Case("healthy_plain", "healthy: plain Adam", frozenset(), control=True),
    Case("healthy_accumulation", "healthy: gradient accumulation", frozenset(), control=True),
    Case("healthy_bf16", "healthy: bf16 autocast", frozenset(), control=True),
    Case("healthy_scheduler", "healthy: warmup + cosine schedule", frozenset(), control=True),
    Case("healthy_cnn", "healthy: small CNN", frozenset(), control=True),
)

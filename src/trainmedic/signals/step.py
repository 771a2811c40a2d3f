"""What one training step yields for the detectors: plain numbers, no tensors.

:class:`~trainmedic.signals.collect.Collector` produces it with one device-to-host copy; the engine and the
detectors only ever see this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class StepSignals:
    loss: float
    grad_norm: float  # global L2 norm over the parameters that have a gradient
    norms: list[float]  # per-parameter gradient norms, aligned with the watched parameters
    stale: float | None  # |previous grad| seen by the first backward since the last step (None: zeroed)
    update_norm: float | None  # ||w_t - w_{t-1}|| when sampled at the previous step
    weight_norm: float | None
    backwards: int = 0  # backward passes the stale-gradient probe saw since the last step
    clip_bound: float | None = None  # the norm bound the script clips to (clip_grad_norm_/_value_), if any
    players: int = 1  # optimizers of the process stepping in turn (a game: signals/players.py)

    @property
    def loss_finite(self) -> bool:
        return math.isfinite(self.loss)

    @property
    def grads_finite(self) -> bool:
        return math.isfinite(self.grad_norm)

"""The end of a training phase, for the engine: one last slow check of a phase that ended early.

A phase ends when its optimizer has stepped for the last time: the script ended (``trainmedic run``, the
Lightning and Hugging Face callbacks at the end of training), or the program moved on to a new optimizer
(:mod:`trainmedic.instrument.phases`; a Medic built later takes its first step). The early-window rules
judge at the slow checks: stalled updates (TM312) from ``stall_samples`` update samples, slow convergence
(TM315) once ``slow_window`` steps were seen. A pre-training of 76 steps or a fine-tuning of 140 never
reached them, so a learning rate 1000x too low went unnamed in either (issue 11's held-out corpus,
finetune_frozen). Such a phase gets one last slow check over all its steps, from ``slow_min_steps`` on.
A longer phase has had its slow checks as it went and gets none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainmedic.rules.detectors import Cadence, Observation
from trainmedic.verdict import StepVerdict

if TYPE_CHECKING:
    from trainmedic.config import Thresholds
    from trainmedic.heal.policy import Policy
    from trainmedic.signals.monitor import Monitor


class PhaseEnd:
    """A mixin of :class:`~trainmedic.engine.Engine` (module docstring)."""

    cfg: Thresholds
    monitor: Monitor
    policy: Policy
    step_count: int
    layers: list[str]
    ended_at: int | None
    rates: Any
    levels: Any
    _run: Callable[[Cadence, Observation, StepVerdict, float], None]

    def end_phase(self) -> None:
        """The watched optimizer has stepped for the last time; a short phase gets its last slow check
        (``Observation.final``). Idempotent until the optimizer steps again."""
        cfg, window = self.cfg, self.monitor.step_window
        if self.ended_at == self.step_count or self.step_count >= cfg.slow_window or self.policy.probing:
            return
        self.ended_at = self.step_count
        if window.finite_steps < cfg.slow_min_steps:
            return
        window.refresh(self.step_count - 1, cfg)
        obs = Observation(self.step_count - 1, cfg, self.monitor, layers=self.layers, rates=self.rates,
                          levels=self.levels, final=True)
        self._run(Cadence.SLOW, obs, StepVerdict(step=obs.step), math.nan)

"""What the engine decides for a step or an evaluation, for the actions layer to carry out.

A verdict is plain data. The engine (:mod:`trainmedic.engine`) fills it from the detectors' findings and
the heal policy (:mod:`trainmedic.heal.policy`); the driver (:mod:`trainmedic.driver`) hands it to
:class:`~trainmedic.heal.actions.Actuator`, which is the only code that changes torch objects. In watch
mode a verdict only ever says "proceed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainmedic.findings import Finding
from trainmedic.signals.step import StepSignals


@dataclass
class Rollback:
    """Restore the snapshot taken at ``to_step``, then multiply every learning rate by ``lr_multiplier``.
    ``keep_schedule``: the scheduler stays where it is and the rates multiplied are the current ones (the
    rate audit's restart under a scheduler, :mod:`trainmedic.heal.audit_schedule`)."""

    to_step: int
    lr_multiplier: float
    lr_before: float
    lr_after: float
    reason: str
    keep_schedule: bool = False


@dataclass
class StepVerdict:
    step: int
    proceed: bool = True  # let the optimizer step run (a GradScaler may still skip it itself)
    applied: bool = True  # the step counts as applied: False when skipped, rolled back or skipped by the scaler
    finite: bool = True  # its loss and gradients were finite (per-step schedulers advance on these only)
    snapshot_now: int | None = None  # take a snapshot before anything else (heal: the initial weights)
    clip_to: float | None = None  # scale the gradients down to this global norm
    grad_norm: float = math.nan
    rollback: Rollback | None = None
    lr_multiplier: float = 1.0  # multiply every learning rate (oscillation)
    zero_grads: bool = False  # drop this step's gradients (a skipped step)
    zero_after_step: bool = False  # reset the gradients after the step (TM310 healed)
    snapshot_after: int | None = None  # once the step is applied, snapshot the state, labelled with this step
    keep_snapshots: frozenset[int] | None = None  # the snapshots to keep (None: unchanged)
    nonfinite: Finding | None = None  # the TM301/TM302 finding of this step, for forensics
    signals: StepSignals | None = None  # what the verdict was reached on
    sample_update: bool = False  # measure the update/weight ratio around this step
    sample_activations: bool = False  # sample the activations of the next training forward pass
    stop: bool = False
    exhausted: str | None = None  # heal's budget ran out (TM316), and why
    loss: float = math.nan
    actions: list[dict[str, Any]] = field(default_factory=list)  # what was decided, as events


@dataclass
class EpochVerdict:
    epoch: int
    record: dict[str, Any] = field(default_factory=dict)
    monitored: float | None = None  # the value the epoch detectors judged (validation or training loss)
    save_best: bool = False  # this evaluation is the best so far: keep its weights
    restore_best: int | None = None  # restore the weights kept at this epoch
    lr_multiplier: float = 1.0
    stop: bool = False
    exhausted: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)

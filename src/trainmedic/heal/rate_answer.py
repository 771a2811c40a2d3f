"""Heal's answer to the rate audit's finding (TM343, :mod:`trainmedic.heal.rate_audit`): restart or cut.

The audit finds, at the first evaluation, that a lower rate beats the current one on copies of the run. The
weights it looks at are an epoch's worth of steps at a rate 10-30x too high: a poor basin, which a lower
rate from there does not leave. Restarting from the initial weights did better than the cut (issue 12,
``HEAL_RESULTS.md`` round six: 77/96 heal cases within 1.1x of the tuned run against 75/96 on the same
plain runs; classify 30x 1.01-1.22 -> 1.02-1.10, GRU 10x 1.07-1.09 -> 1.00-1.03). So where the
evaluation comes early, heal rolls back to the initial snapshot (step 0) and starts the probe it uses after
early instability (:mod:`trainmedic.heal.steering`): rates rising over three decades below the audited rate -
never above it, the audit has just found it too high - then a linear warmup to the rate the probe supports.

It cuts the rate instead, keeping the weights, as before:

* ``rate_audit_restart=False``;
* a learning-rate scheduler sets the rate: the probe and warmup set absolute rates the scheduler overwrites
  from its base rates, while the cut scales those too (:mod:`trainmedic.heal.audit_schedule`);
* the evaluation comes more than ``rate_audit_window`` steps after the run began to learn: a restart would
  throw away more training than a bad first epoch costs (a held-out autoencoder whose first evaluation came
  after 3-5 epochs got false restarts in 10 of 24 runs without this guard). The steps are counted from the
  last evaluation at which the run was not yet learning (the audit waits for one that learns; the finding's
  ``learning_since``), else from the start: steps spent at the first loss are no training a restart throws
  away. A GRU at 30x its rate sat at its first loss through its first 62-step epoch, was audited at step
  124 and, counted from 0, cut to 1/10 instead of restarting (1.27-1.28x the tuned run; round seven);
* no initial snapshot is kept, or the rollback or probe budget is spent, or the probe would go below
  ``min_lr``.

The decision is taken at the evaluation (the finding says which); the rollback itself is a step's action
(the actuator restores snapshots before a step), so it happens at the next step, whose gradients are
dropped as at any rollback. Plain data, no torch: a mixin of :class:`~trainmedic.heal.policy.Policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import DEFAULT_DECADES
from trainmedic.heal.steering import Steering
from trainmedic.rules.detectors import Detection
from trainmedic.signals.monitor import StepWindow
from trainmedic.verdict import EpochVerdict, StepVerdict


class RateAnswer:
    """The restart request (``rate_restart``) and the cut; the policy's budgets and snapshots decide."""

    # provided by Policy
    cfg: Thresholds
    heal: bool
    rollbacks: int
    initial: Any  # SnapshotEntry | None
    steer: Steering
    _rollback: Callable[[Detection, StepVerdict, StepWindow, float], str]
    _below_min: Callable[[float, StepVerdict | EpochVerdict, float], bool]
    _scale_lr: Callable[[str, float, StepVerdict | EpochVerdict, float], str]
    _go_back: Callable[..., None]
    #: a restart decided at an evaluation, carried out at the next step: the audited rate and the evidence
    rate_restart: dict[str, Any] | None = None

    def rate_too_high(self, reason: str, factor: float, v: EpochVerdict, lr: float, step: int,
                      scheduled: bool = False, **detail: Any) -> str | None:
        """The audit found ``lr`` too high at the evaluation after ``step`` steps; ``factor`` is the cut it
        would make. ``scheduled``: a scheduler sets the rate, so a restart scales the schedule by ``factor``
        instead of probing (:mod:`trainmedic.heal.audit_schedule`). Returns the finding's action text (None in
        watch mode)."""
        if not self.heal:
            return None
        if self.can_restart(lr * factor if scheduled else lr / 10**DEFAULT_DECADES,
                            step - int(detail.get("learning_since", 0)), probe=not scheduled):
            self.rate_restart = {"reason": reason, "lr": lr, "audit_epoch": v.epoch,
                                 **({"scale": factor} if scheduled else {}), **detail}
            if scheduled:
                return f"restart from step 0, schedule x{factor:.3g}"
            return f"restart from step 0, probe up to {lr:.3g}, warmup"
        if not self.rate_cut(reason, factor, v, lr, **detail):
            return f"lr x{factor:.3g} refused (min_lr)"
        return f"lr x{factor:.3g}"

    def can_restart(self, lowest: float, learned: int, probe: bool = True) -> bool:
        """Restart rather than cut: allowed, early enough (``learned``: the steps since the run began to learn,
        at most), an initial snapshot and the budgets for it (a probe's too, with ``probe``), and ``lowest``
        (the lowest rate the restart sets) not below ``min_lr``."""
        cfg, entry = self.cfg, self.initial
        return (cfg.rate_audit_restart and learned <= cfg.rate_audit_window and entry is not None
                and entry.lr is not None and self.rollbacks < cfg.max_rollbacks
                and (self.steer.can_probe() or not probe) and lowest >= cfg.min_lr)

    def restart(self, v: StepVerdict, window: StepWindow) -> None:
        """The step after the evaluation: roll back to the initial snapshot and probe below the audited rate
        (:meth:`Policy._rollback` with the trouble dated at step 0: the initial snapshot, a warmup after)."""
        req, self.rate_restart = self.rate_restart, None
        assert req is not None
        reason, lr, scale = req.pop("reason"), req.pop("lr"), req.pop("scale", None)
        n = len(v.actions)
        if scale is not None:
            self._restart_schedule(reason, float(scale), v, lr)
            why = f"restart from the initial weights, the schedule's rates x{scale:.3g}"
        else:
            self._rollback(Detection(reason, "rate audit", onset=0), v, window, lr)
            why = "restart from the initial weights, probe no higher than that rate"
        if len(v.actions) > n:  # the rollback's event: why it went back to step 0, and why that ceiling
            v.actions[-1].update(why=f"the rate audit at evaluation {req.get('audit_epoch')} found {lr:.3g} too "
                                     f"high: {why}", ceiling=lr, **req)

    def _restart_schedule(self, reason: str, factor: float, v: StepVerdict, lr: float) -> None:
        """Under a scheduler: the weights and optimizer state of the initial snapshot, the scheduler where it
        is, and every rate, its base rates included, x ``factor`` (:meth:`~trainmedic.heal.actions.Actuator.
        rollback`, ``keep_schedule``). No probe and no warmup of heal's own: they set absolute rates the
        scheduler overwrites at its next step. The schedule keeps its place so that it still ends where the
        script planned (restarted from its step 0 it ends the run before its decay: measured in
        :mod:`trainmedic.heal.audit_schedule`)."""
        entry = self.initial
        v.proceed = v.applied = False
        v.zero_grads = True
        v.clip_to = None
        v.lr_multiplier = 1.0
        v.actions = [a for a in v.actions if a["action"] != "clip"]
        self._go_back(v, entry, factor, lr, lr * factor, reason, keep_schedule=True)

    def rate_cut(self, reason: str, factor: float, v: EpochVerdict, lr: float, **detail: Any) -> bool:
        """The fallback: the rate x ``factor`` now, no rollback (the weights are kept). False when refused."""
        if self._below_min(lr * factor, v, lr):
            return False
        self._scale_lr(reason, factor, v, lr)
        v.actions[-1].update(detail)
        return True

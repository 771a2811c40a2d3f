"""The actions layer: carries out a verdict on the torch objects. The only code that changes them.

Skip a step (drop its gradients), clip it, roll back to a snapshot and rescale the learning rate, change
the learning rate, reset gradients after a step, take and prune snapshots, keep and restore the best
evaluation's weights. What to do is decided elsewhere (:mod:`trainmedic.engine`,
:mod:`trainmedic.heal.policy`); nothing here judges.
"""

from __future__ import annotations

from typing import Any

import torch

from trainmedic.heal.snapshot import Snapshot
from trainmedic.verdict import Rollback


def first_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0].get("lr", float("nan"))
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)


def scale_base_lrs(scheduler: Any, factor: float) -> None:
    """Multiply the base rates ``scheduler`` derives the rate from, and those of the schedulers it chains
    (``SequentialLR`` and ``ChainedScheduler``, through their state dicts): at a milestone ``SequentialLR``
    restarts the next one from its own base rates, which would undo a cut made before."""
    base = getattr(scheduler, "base_lrs", None)
    if isinstance(base, list):
        scheduler.base_lrs = [b * factor for b in base]
    state = scheduler.state_dict() if hasattr(scheduler, "state_dict") else {}
    inner = state.get("_schedulers") if isinstance(state, dict) else None
    if isinstance(inner, list) and any(isinstance(s, dict) and isinstance(s.get("base_lrs"), list) for s in inner):
        for s in inner:
            if isinstance(s, dict) and isinstance(s.get("base_lrs"), list):
                s["base_lrs"] = [b * factor for b in s["base_lrs"]]
        scheduler.load_state_dict(state)


class Actuator:
    """Applies verdicts to ``model``, ``optimizer``, ``scheduler`` and ``scaler`` (public attributes: a
    front end that discovers the scheduler or scaler later sets them), and holds the heal snapshots."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any = None,
                 scaler: Any = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.snapshots: dict[int, Snapshot] = {}
        self.best_weights: dict[str, torch.Tensor] | None = None

    @property
    def lr(self) -> float:
        return first_lr(self.optimizer)

    # -- the step -----------------------------------------------------------------------------------
    def drop_gradients(self) -> None:
        """A skipped step: its gradients must not leak into the next one."""
        self.optimizer.zero_grad(set_to_none=True)

    def clip(self, to: float, grad_norm: float) -> None:
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and grad_norm > to:
            torch._foreach_mul_(grads, to / grad_norm)

    def scale_lr(self, factor: float) -> None:
        """Multiply every learning rate (and the bounds schedulers derive it from) by ``factor``."""
        if factor == 1.0:
            return
        for g in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in g and isinstance(g[key], (int, float)) and not isinstance(g[key], bool):
                    g[key] = g[key] * factor
                elif key == "lr" and isinstance(g.get(key), torch.Tensor):
                    g[key].mul_(factor)
        scale_base_lrs(self.scheduler, factor)

    # -- snapshots and rollbacks --------------------------------------------------------------------
    def take_snapshot(self, step: int) -> float:
        """Copy the state labelled ``step``; returns the first group's learning rate held in it."""
        self.snapshots[step] = Snapshot.take(step, self.model, self.optimizer, self.scheduler, self.scaler)
        return self.lr

    def keep_snapshots(self, steps: frozenset[int]) -> None:
        for s in [s for s in self.snapshots if s not in steps]:
            del self.snapshots[s]

    def rollback(self, rb: Rollback) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if rb.keep_schedule:  # the weights and the optimizer's state go back; the schedule's place does not
            rates = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
                     for g in self.optimizer.param_groups]
            self.snapshots[rb.to_step].restore(self.model, self.optimizer, None, self.scaler)
            for g, r in zip(self.optimizer.param_groups, rates):
                g["lr"] = r
        else:
            self.snapshots[rb.to_step].restore(self.model, self.optimizer, self.scheduler, self.scaler)
        self.scale_lr(rb.lr_multiplier)

    # -- the best evaluation ------------------------------------------------------------------------
    def save_best(self) -> None:
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def restore_best(self) -> bool:
        if self.best_weights is None:
            return False
        self.model.load_state_dict(self.best_weights)
        return True

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self, snapshots: bool = True) -> dict[str, Any]:
        state: dict[str, Any] = {"best_weights": self.best_weights}
        if snapshots:
            state["snapshots"] = [s.state_dict() for s in sorted(self.snapshots.values(), key=lambda s: s.step)]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_weights = state.get("best_weights")
        if "snapshots" in state:
            self.snapshots = {int(s["step"]): Snapshot.from_state(s) for s in state["snapshots"]}

"""LR schedulers under ``trainmedic run``: which scheduler goes with which optimizer (snapshotted with the
weights), and the validation value a ``ReduceLROnPlateau.step(val)`` carries. A mixin of
:class:`~trainmedic.instrument.session.Session`, which installs these wrappers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainmedic.instrument.epochs import EpochTracker
from trainmedic.instrument.hooked import HookedRun


class ScheduleWatching:
    run: HookedRun
    epochs: EpochTracker
    _busy: bool
    _sched_depth: int
    _sched_of: dict[int, Any]
    _guarded: Callable[..., Any]

    def _wrap_sched_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            if self._sched_depth == 0 and not self._busy:
                self._guarded("scheduler hook", self._saw_scheduler, scheduler)
            self._sched_depth += 1
            try:
                return original(scheduler, *args, **kwargs)
            finally:
                self._sched_depth -= 1

        return step

    def _saw_scheduler(self, scheduler: Any) -> None:
        opt = getattr(scheduler, "optimizer", None)
        if opt is None:
            return
        self._sched_of[id(opt)] = scheduler
        driver = self.run.driver_of(opt)
        if driver is not None:
            driver.scheduler = scheduler

    def _wrap_plateau_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            metrics = args[0] if args else kwargs.get("metrics")
            if metrics is not None and not self._busy:
                self._guarded("ReduceLROnPlateau hook", self._saw_plateau, scheduler, metrics)
            return original(scheduler, *args, **kwargs)

        return step

    def _saw_plateau(self, scheduler: Any, metrics: Any) -> None:
        self._saw_scheduler(scheduler)
        value = float(metrics.detach().item() if isinstance(metrics, torch.Tensor) else metrics)
        if getattr(scheduler, "mode", "min") == "max":
            self.epochs.explicit_value(val_metric=value)
        else:
            self.epochs.explicit_value(val_loss=value)


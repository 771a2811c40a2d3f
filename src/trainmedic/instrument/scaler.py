"""``torch.amp.GradScaler`` under ``trainmedic run``: a mixin of the session.

``scaler.scale(loss)`` is recorded, so the backward hook judges the unscaled loss; ``scaler.step(opt)`` tells
the optimizer's driver which scaler it has; and a step the scaler skipped (inf/NaN in the gradients: it
never calls ``optimizer.step()``) is still a step for the driver, judged without the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainmedic.instrument.epochs import EpochTracker
from trainmedic.instrument.hooked import HookedRun
from trainmedic.instrument.patches import recording_scale
from trainmedic.observe.live import Observed


class ScalerWatching:
    """The GradScaler hooks (module docstring); a mixin of the session."""

    # provided by Session
    run: HookedRun
    epochs: EpochTracker
    _busy: bool
    _scaled: tuple[torch.Tensor, torch.Tensor] | None
    _scaler_of: dict[int, Any]
    _step_calls: int
    _last_loss: Any
    _observed: Observed | None
    _guarded: Callable[..., Any]
    _rebuild_step: Callable[[torch.optim.Optimizer], None]
    _driver: Callable[[torch.optim.Optimizer], Any]
    _batch: Callable[..., Any]
    _complete: Callable[..., Any]

    def _wrap_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        return recording_scale(original, self._record_scaled)

    def _record_scaled(self, scaled: torch.Tensor, loss: torch.Tensor) -> None:
        self._scaled = (scaled, loss)

    def _wrap_scaler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            if not self._busy:
                self._scaler_of[id(optimizer)] = scaler
                driver = self.run.driver_of(optimizer)
                if driver is not None and driver.scaler is not scaler:
                    driver.scaler = scaler
            before = self._step_calls
            out = original(scaler, optimizer, *args, **kwargs)
            if self._step_calls == before and not self._busy and scaler.is_enabled():
                self._guarded("GradScaler hook", self._scaler_skipped, optimizer, scaler)
            return out

        return step

    def _scaler_skipped(self, optimizer: Any, scaler: Any) -> None:
        """The scaler found inf/NaN in the gradients and did not call optimizer.step(): tell the driver."""
        self.epochs.training_step()
        self._rebuild_step(optimizer)
        driver = self._driver(optimizer)
        if driver is None or self._last_loss is None:
            return
        driver.scaler = scaler
        observed, self._observed = self._observed, None
        self.run.step_without_optimizer(optimizer, self._last_loss, self._batch(driver),
                                        self._complete(observed, driver))

"""Training phases for ``trainmedic run``: a program that moves on to a new optimizer moves the watch with it.

Many programs train in phases, one after the other: pre-train, then fine-tune with a new optimizer (often
over a new head); train a teacher, then a student with a second optimizer; a warm-up optimizer, then the
real one. Each optimizer already gets its own driver and engine (so every baseline, window and warm-up of
the new phase starts from nothing). What did not follow the program was what the session hands a driver
besides the loss: the model (discovery stopped at the first optimizer step, so a later optimizer's model,
never seen in a forward pass, was watched as a bare list of tensors: no layers, no ReLU hooks, no
pre-flight), and the inputs, targets and loss calls of the step (kept for the first driver only). Those
are what the data, wiring, initialization and constant-level checks read, so a fault of phase 2 was judged
without them.

A new phase starts when an optimizer built after training began (some driver had already stepped) takes
its first step. Optimizers built before the first step (a GAN's two, trained side by side) start no phase:
the first driver stays the one that receives the inputs. When a phase starts:

* model discovery, stopped at the first step, is reopened from the moment such an optimizer is built until
  it first steps, so its model is found among the modules of the forward passes in between;
* the new driver becomes the primary one: the model's training inputs, the targets and what the step showed
  before its backward go to it; the inputs of its first step are the ones discovery saw;
* the drivers of the earlier phase are retired: their findings and curves stay in the report, but the
  evaluations of the new phase no longer close their epochs (a retired optimizer that steps again is
  watched again); the epoch tracker learns the new phase's training loader afresh;
* the earlier phase has ended: a phase shorter than the early window gets its last slow check over all its
  steps (:meth:`~trainmedic.engine.Engine.end_phase`), as every driver does when the script ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from trainmedic.driver import Driver
from trainmedic.instrument.compiled import CompiledCode
from trainmedic.instrument.discovery import unwrap
from trainmedic.instrument.epochs import EpochTracker
from trainmedic.instrument.hooked import HookedRun
from trainmedic.observe.live import Observed
from trainmedic.preflight import follows_phases


class PhaseWatching:
    """The phases of a ``trainmedic run`` (module docstring); a mixin of the session."""

    # provided by Session
    run: HookedRun
    epochs: EpochTracker
    drivers: list[Driver]
    _seen: dict[int, torch.nn.Module]
    _seen_args: dict[int, Any]
    _last_input: Any
    _last_target: Any
    _input_handle: Any
    _discover_handle: Any
    _off: set[str]
    compiled: CompiledCode
    _start_discovery: Callable[[], None]
    _watch_inputs: Callable[[torch.nn.Module], None]

    def _init_phases(self) -> None:
        self._phase_optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        self._phase_driver: Driver | None = None

    @property
    def primary(self) -> Driver | None:
        """The driver that receives the model's inputs and the step's targets: the current phase's."""
        if self._phase_driver is not None and self._phase_driver in self.drivers:
            return self._phase_driver
        return self.drivers[0] if self.drivers else None

    @property
    def observing_next(self) -> bool:
        """Whether the coming step is one the live checks look at: a driver's, or the first of a new phase."""
        return self.run.observing_next or self.phase_pending

    @property
    def phase_pending(self) -> bool:
        """An optimizer built after training began has not stepped yet."""
        return len(self._phase_optimizers) > 0

    def _optimizer_built(self, optimizer: torch.optim.Optimizer) -> None:
        """A new optimizer: after training began, it may open a new phase (reopen discovery until it steps)."""
        if not any(d.step_count for d in self.drivers):
            return
        self._phase_optimizers.add(optimizer)
        self._reopen_discovery()

    def _complete(self, observed: Observed | None, driver: Driver) -> Observed | None:
        """What the step showed before its backward, with the model's inputs and targets for the primary one."""
        if observed is not None and driver is self.primary:
            observed.inputs, observed.target = self._last_input, self._last_target
        return observed

    def _reopen_discovery(self) -> None:
        """Find the new optimizer's model until it steps (never in compiled code: a global hook would be traced)."""
        if self._discover_handle is None and not self.compiled.any and "module forward hook" not in self._off:
            self._start_discovery()

    def _opens_phase(self, optimizer: torch.optim.Optimizer) -> bool:
        return optimizer in self._phase_optimizers

    def _start_phase(self, driver: Driver, model: torch.nn.Module) -> None:
        """``driver``'s optimizer, built after training began, takes its first step: make it the primary one."""
        self._phase_optimizers = weakref.WeakSet()  # others built with it belong to the same phase
        earlier = [d for d in self.drivers if d is not driver]
        self._phase_driver = driver
        outer = [m for m in self._seen.values() if unwrap(m) is model] or [model]
        # discovery (reopened for this phase) kept each module's latest input: the new driver's first batch
        first_input = next((self._seen_args[id(m)] for m in outer if id(m) in self._seen_args), None)
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None
        self._watch_inputs(model)
        self._last_input = first_input
        follows_phases(driver, earlier)  # a pre-trained body is no initialization
        for d in earlier:
            self.run.retire(d, close_epoch=not self.epochs.reports_validation)
        self.epochs.new_phase()

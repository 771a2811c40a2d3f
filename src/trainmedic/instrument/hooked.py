"""The hook-driven front end: drivers whose optimizer step is taken by someone else.

``trainmedic run`` (the user's script), the Lightning callback and the Hugging Face callback all have the
same situation: the script or the framework calls ``optimizer.step()``; trainmedic sees the step just before
(an optimizer step pre-hook, or the framework's "before optimizer step" callback) and just after (the step
post-hook). :class:`HookedRun` keeps one :class:`~trainmedic.driver.Driver` per optimizer and speaks the step
protocol for them:

* before the step: ``driver.before_step(loss, batch)``; when the verdict says not to apply the step,
  :class:`StepGate` makes the step that is about to run a no-op;
* after the step: undo what the gate could not prevent, then ``driver.after_step()``.

A new front end (Accelerate, a custom trainer) needs only to call :meth:`HookedRun.before_step` and
:meth:`HookedRun.after_step` around its optimizer steps and :meth:`HookedRun.end_epoch` at evaluations.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from trainmedic.config import Thresholds
from trainmedic.driver import Driver
from trainmedic.findings import Finding
from trainmedic.observe.live import Observed
from trainmedic.report.files import merged_findings, write_run
from trainmedic.rules.internal import INSTRUMENTATION_FAILED


class HookedRun:
    """One driver per optimizer, all in the same mode; see the module docstring.

    Args:
        mode: ``"watch"`` or ``"heal"``.
        thresholds: a :class:`Thresholds` or a dict of overrides.
        console: print findings and actions on stderr.
        status: also the live status line (stderr's last row, on a terminal only; see report/console.py).
        name: how this front end names itself in a TM901 finding.
    """

    def __init__(self, mode: str = "watch", thresholds: Thresholds | dict[str, Any] | None = None,
                 console: bool = True, name: str = "trainmedic", status: bool = False) -> None:
        if mode not in ("watch", "heal"):
            raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
        if isinstance(thresholds, dict):
            thresholds = Thresholds().replace(**thresholds)
        self.mode = mode
        self.thresholds = thresholds
        self.console = console
        self.name = name
        self.status = status
        self.drivers: list[Driver] = []
        self.failed: str | None = None
        self.internal: list[Finding] = []  # failures of the front end itself (TM902)
        self._by_optimizer: dict[int, Driver] = {}
        self._gates: dict[int, StepGate] = {}
        self._retired: set[int] = set()  # drivers of an earlier training phase (instrument/phases.py)

    # -- drivers ---------------------------------------------------------------------------------------
    def add(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, scheduler: Any = None,
            scaler: Any = None, console: bool | None = None, mode: str | None = None) -> Driver:
        """The driver of ``optimizer`` (created on first use).

        ``mode`` overrides the run's mode for this driver: ``"watch"`` for a loop whose steps the front end
        can see but not take or skip (a loop that updates its parameters by hand).
        """
        driver = self._by_optimizer.get(id(optimizer))
        if driver is None:
            driver = Driver(model, optimizer, mode=mode or self.mode, thresholds=self.thresholds, scheduler=scheduler,
                            scaler=scaler, console=self.console if console is None else console, status=self.status,
                            name=f"{type(model).__name__}/{type(optimizer).__name__}#{len(self.drivers)}",
                            observes_itself=False)
            self._by_optimizer[id(optimizer)] = driver
            self.drivers.append(driver)
        return driver

    def remove(self, optimizer: Any) -> Driver | None:
        """Forget the driver of ``optimizer`` (its findings and curves go with it) and close it.

        For a driver added on trial: ``trainmedic run`` watches a loop without an optimizer from its first
        backward pass, before it knows that the loop updates the parameters; when it turns out not to,
        nothing of that trial must reach the report.
        """
        driver = self._by_optimizer.pop(id(optimizer), None)
        self._gates.pop(id(optimizer), None)
        if driver is not None:
            self._retired.discard(id(driver))
            self.drivers.remove(driver)
            driver.close()
        return driver

    def retire(self, driver: Driver, close_epoch: bool = False) -> None:
        """``driver``'s optimizer belongs to an earlier training phase: later evaluations are not its own.
        ``close_epoch``: first close its epoch in progress on its training loss. It keeps its findings and
        curves; if its optimizer steps again, it is watched again (:meth:`before_step`)."""
        if id(driver) in self._retired or driver not in self.drivers:
            return
        self._retired.add(id(driver))
        if self.failed:
            return
        try:
            if close_epoch:
                driver.end_epoch()
            driver.guard("end-of-phase checks", driver.engine.end_phase)
        except Exception as exc:
            self.fail("the end of a training phase", exc)

    def finish(self) -> None:
        """Training is over: every driver's phase ends (a short one gets its last slow check)."""
        if self.failed:
            return
        try:
            for d in self.drivers:
                d.guard("end-of-phase checks", d.engine.end_phase)
        except Exception as exc:
            self.fail("the end of training", exc)

    def driver_of(self, optimizer: Any) -> Driver | None:
        return self._by_optimizer.get(id(optimizer))

    @property
    def primary(self) -> Driver | None:
        return self.drivers[0] if self.drivers else None

    @property
    def observing_next(self) -> bool:
        """Whether the coming step is one the live checks look at (read the loss graph before backward)."""
        return not self.drivers or any(d.observing_next for d in self.drivers)

    @property
    def should_stop(self) -> bool:
        return any(d.should_stop for d in self.drivers)

    @property
    def findings(self) -> list[Finding]:
        return merged_findings(self.drivers, self.internal) if self.drivers else list(self.internal)

    # -- the step protocol, around someone else's optimizer step ---------------------------------------
    def before_step(self, optimizer: torch.optim.Optimizer, loss: Any, batch: Any = None,
                    observed: Observed | None = None) -> None:
        """Gradients are ready and ``optimizer.step()`` is about to run: judge it, maybe make it a no-op.
        ``observed``: what the front end saw of this step before its backward (the live checks read it)."""
        driver = self.driver_of(optimizer)
        if self.failed or driver is None or not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        self._retired.discard(id(driver))
        try:
            gate = StepGate(optimizer)
            if not driver.before_step(loss, batch, observed).proceed:
                gate.close()
            self._gates[id(optimizer)] = gate
        except Exception as exc:
            self.fail("before the optimizer step", exc)

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` returned: undo a gated step where needed, finish the step."""
        gate = self._gates.pop(id(optimizer), None)
        driver = self.driver_of(optimizer)
        if self.failed or gate is None or driver is None:
            return
        try:
            gate.reopen()
            driver.after_step()
        except Exception as exc:
            self.fail("after the optimizer step", exc)

    def step_without_optimizer(self, optimizer: torch.optim.Optimizer, loss: Any, batch: Any = None,
                               observed: Observed | None = None) -> None:
        """A step that never reached the optimizer (a GradScaler that found inf/NaN skips ``step()``)."""
        self.before_step(optimizer, loss, batch, observed)
        self._gates.pop(id(optimizer), None)
        driver = self.driver_of(optimizer)
        if driver is not None and not self.failed:
            driver.after_step()

    def end_epoch(self, val_loss: Any = None, val_metric: Any = None, *, higher_is_better: bool = True) -> None:
        if self.failed:
            return
        try:
            for d in self.drivers:
                if id(d) in self._retired:
                    continue
                d.end_epoch(_scalar(val_loss), _scalar(val_metric), higher_is_better=higher_is_better)
        except Exception as exc:
            self.fail("end_epoch", exc)

    def fail(self, where: str, exc: BaseException) -> None:
        """A failure of the front end itself switches it off (TM902); training goes on untouched."""
        self.failed = where
        self.internal.append(Finding(code=INSTRUMENTATION_FAILED.code,
                                     message=f"{self.name} {where} raised {type(exc).__name__}: {exc}; switched off",
                                     step=self.primary.step_count if self.primary else None,
                                     evidence={"check": f"{self.name} {where}", "exception": repr(exc)}))

    # -- output ----------------------------------------------------------------------------------------
    def save(self, out: str | os.PathLike[str], meta: dict[str, Any] | None = None,
             extra_findings: Iterable[Finding] = ()) -> Path | None:
        """Write the run's files (every driver's findings and curves, and the front end's own findings)."""
        extra = [*self.internal, *extra_findings]
        if not self.drivers and not extra:
            return None
        path = write_run(out, self.drivers, meta=meta, extra_findings=extra)
        for d in self.drivers:
            d.call("on_save", d, path)
        return path

    def close(self) -> None:
        for d in self.drivers:
            d.close()


def _scalar(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().item()) if v.numel() == 1 else None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def skips_none_grads(optimizer: torch.optim.Optimizer) -> bool:
    """True for torch.optim optimizers, which leave a parameter whose ``.grad`` is None untouched.

    PyTorch documents this (``Optimizer.zero_grad``: with ``grad=None`` the step is skipped for that
    parameter): no update, no momentum, no weight decay, no step count. LBFGS re-evaluates a closure and is
    excluded; other optimizers are handled by restoring their state after the step.
    """
    cls = type(optimizer)
    return cls.__module__.startswith("torch.optim.") and cls.__name__ != "LBFGS"


class StepGate:
    """Makes the optimizer step that is about to run a no-op, for any optimizer (see :func:`skips_none_grads`).

    Built before the engine looks at the step (it notes which parameters have a gradient); ``close()`` when
    the engine decided not to apply the step; ``reopen()`` after the step ran.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.safe = skips_none_grads(optimizer)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.had = None if self.safe else [p.grad is not None for p in self.params]
        self.saved: tuple[list[torch.Tensor], dict[str, Any]] | None = None

    def close(self) -> None:
        if self.safe:  # torch.optim leaves a parameter whose gradient is None untouched
            for p in self.params:
                p.grad = None
            return
        self.saved = ([p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict()))
        for p, h in zip(self.params, self.had or []):
            p.grad = torch.zeros_like(p) if h else None  # an optimizer that expects a gradient gets zeros

    def reopen(self) -> bool:
        """Undo what the step did, where close() could not prevent it. True if something was restored."""
        if self.saved is None:
            return False
        values, state = self.saved
        self.saved = None
        with torch.no_grad():
            for p, v in zip(self.params, values):
                p.copy_(v)
        self.optimizer.load_state_dict(state)
        self.optimizer.zero_grad(set_to_none=True)
        return True

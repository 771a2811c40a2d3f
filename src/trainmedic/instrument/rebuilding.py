"""The loss rebuild's wiring into ``trainmedic run`` (the rate audit's in either mode, the probe replay's in heal
mode): a mixin of the session.

Under ``run`` the script's loss function is not handed over, but the rate audit (TM343,
:mod:`trainmedic.heal.rate_audit`) and the probe replay (plain SGD, :mod:`trainmedic.heal.probe_replay`) must
replay it on copies. :mod:`~trainmedic.instrument.loss_rebuild`
rebuilds it from the first steps where that is faithful; this mixin starts it for the first model watched,
feeds it from the session's loss, backward and step hooks, and stops it alone when it fails (TM902).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainmedic.driver import Driver
from trainmedic.heal.rate_audit import ADAPTIVE, audits_in
from trainmedic.instrument.compiled import CompiledCode
from trainmedic.instrument.hooked import HookedRun
from trainmedic.instrument.loops import compile_safe
from trainmedic.instrument.loss_rebuild import LossRebuild
from trainmedic.signals import clipping


class RebuildWatching:
    """Starts and feeds the loss rebuild (module docstring); a mixin of the session."""

    # provided by Session
    run: HookedRun
    drivers: list[Driver]
    rebuild: LossRebuild
    compiled: CompiledCode
    manual: Any
    _input_module: torch.nn.Module | None
    _sched_of: dict[int, Any]
    _busy: bool
    _off: set[str]
    _fail: Callable[[str, BaseException], None]

    def _start_rebuild(self, driver: Driver) -> None:
        """The first model watched: the rate audit (TM343, adaptive optimizers; heal mode, or watch mode where
        :func:`~trainmedic.heal.rate_audit.audits_in` allows it) and the probe replay (plain SGD, heal mode) replay the script's loss, rebuilt from the next steps where that is faithful
        (:mod:`~trainmedic.instrument.loss_rebuild`). It is bound to those two only (``driver.loss_fn`` stays
        None): pre-flight replays at step 0, before the rebuild is decided, and forensics' replays under
        ``run`` were not verified with it, so both stay as they were. Where it is refused, neither replays."""
        target = self._input_module
        if (not audits_in(driver) or driver.loss_fn is not None or target is None
                or self.rebuild.driver is not None or self.compiled.any
                or not all(d is driver or d is self.manual.on_trial for d in self.drivers)):
            return
        from trainmedic.heal.probe_replay import add_probe_replay
        from trainmedic.heal.rate_audit import add_rate_audit

        audit = add_rate_audit(driver)  # None where the audit is configured off
        replay = add_probe_replay(driver)  # None but for plain SGD with the replay on
        binds = [cb.bind for cb in (audit, replay) if cb is not None and cb.active]
        if not binds:  # neither can run: no rebuild, nothing watched
            return

        def bind(loss_fn: Any) -> None:
            for fn in binds:
                fn(loss_fn)

        def seen_output(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
            if module is target and torch.is_grad_enabled() and not self._busy:
                self._rebuilding(self.rebuild.saw_output, module, kwargs, output)

        self.rebuild.start(target, driver, bind, compile_safe(seen_output))

    def _rebuild_step(self, optimizer: torch.optim.Optimizer) -> None:
        """A step of ``optimizer``, for the loss rebuild. Called before ``_driver()``: a driver created now did
        not see this step's forward, so it starts the rebuild after this step."""
        if not self.rebuild.pending:
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        differs = None
        if self._sched_of.get(id(optimizer)) is not None and not isinstance(optimizer, ADAPTIVE):
            # the probe replay (plain SGD) sets absolute rates; the rate audit checks the schedule itself at
            # each evaluation (heal/audit_schedule.py)
            differs = "the script steps a learning-rate scheduler (the replays keep the rate constant)"
        elif clipping.bound_for(params) is not None:
            differs = "the script clips its gradients (the replays would not)"
        self._rebuilding(self.rebuild.saw_step, self.run.driver_of(optimizer), differs)

    def _rebuilding(self, fn: Callable[..., Any], *args: Any) -> None:
        """Feed the loss rebuild from inside another hook (already guarded): a failure stops it alone (TM902)."""
        if "loss rebuild" in self._off or not self.rebuild.pending:
            return
        try:
            fn(*args)
        except Exception as exc:
            self.rebuild.stop("it failed")
            self._fail("loss rebuild", exc)

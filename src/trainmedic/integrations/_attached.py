"""The engine behind the framework callbacks: one :class:`RunMedic` per optimizer, driven by hooks.

The framework runs the loop and calls ``optimizer.step()``; the callback hands the loss and the batch to
:meth:`Attached.before_step` once the gradients are ready, and the engine decides (watch: always apply;
heal: skip, clip, roll back, change the lr). A skipped step is made a no-op with
:class:`~trainmedic.instrument.engine.StepGate`. Everything is guarded: a failure is reported as TM901
and switches the callback off; training goes on untouched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainmedic.config import Thresholds
from trainmedic.instrument.engine import RunMedic, StepGate, script_scaler
from trainmedic.rules.internal import CHECK_FAILED


class Attached:
    def __init__(self, mode: str = "watch", thresholds: Thresholds | dict[str, Any] | None = None,
                 console: bool = True, name: str = "callback") -> None:
        if mode not in ("watch", "heal"):
            raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
        if isinstance(thresholds, dict):
            thresholds = Thresholds().replace(**thresholds)
        self.mode = mode
        self.thresholds = thresholds
        self.console = console
        self.name = name
        self.engines: dict[int, RunMedic] = {}
        self._gates: dict[int, StepGate] = {}
        self._handles: list[Any] = []
        self.failed: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def attach(self, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any = None) -> None:
        for opt in optimizers:
            if id(opt) in self.engines:
                continue
            eng = RunMedic(model, opt, self.mode, thresholds=self.thresholds, console=self.console)
            eng.scaler = script_scaler(scaler)
            self.engines[id(opt)] = eng
            self._handles.append(opt.register_step_post_hook(self._post_hook))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for eng in self.engines.values():
            eng.close()

    @property
    def primary(self) -> RunMedic | None:
        return next(iter(self.engines.values()), None)

    @property
    def should_stop(self) -> bool:
        return any(e.should_stop for e in self.engines.values())

    @property
    def findings(self) -> list[Any]:
        return [f for e in self.engines.values() for f in e.findings]

    # -- the step -------------------------------------------------------------------------------------
    def before_step(self, optimizer: torch.optim.Optimizer, loss: Any, batch: Any = None) -> None:
        """Gradients are ready and ``optimizer.step()`` is about to run: check it, maybe skip it."""
        if self.failed or not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        eng = self.engines.get(id(optimizer))
        if eng is None:
            return
        try:
            gate = StepGate(optimizer)
            if not eng.pre_step(loss, batch):
                gate.close()
                self._gates[id(optimizer)] = gate
        except Exception as exc:
            self.fail("before the optimizer step", exc)

    def _post_hook(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.failed:
            return
        try:
            gate = self._gates.pop(id(optimizer), None)
            if gate is not None and gate.reopen():
                return
            eng = self.engines.get(id(optimizer))
            if eng is not None:
                eng.post_step()
        except Exception as exc:
            self.fail("after the optimizer step", exc)

    def end_epoch(self, val_loss: Any = None, val_metric: Any = None) -> None:
        if self.failed:
            return
        try:
            for eng in self.engines.values():
                eng.end_epoch(val_loss=_scalar(val_loss), val_metric=_scalar(val_metric))
        except Exception as exc:
            self.fail("end_epoch", exc)

    def fail(self, where: str, exc: BaseException) -> None:
        self.failed = where
        eng = self.primary
        if eng is not None:
            eng.report(CHECK_FAILED.code, f"{self.name} {where} raised {type(exc).__name__}: {exc}; switched off",
                       evidence={"check": f"{self.name} {where}", "exception": repr(exc)})

    # -- output ---------------------------------------------------------------------------------------
    def save(self, out: str | os.PathLike[str]) -> Path | None:
        eng = self.primary
        if eng is None:
            return None
        for i, other in enumerate(list(self.engines.values())[1:], start=1):
            for f in other.findings:
                f.evidence.setdefault("optimizer", i)
                eng.log.add(f, key=f"optimizer{i}:{f.code}")
        return eng.save_report(out)


def _scalar(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().item()) if v.numel() == 1 else None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

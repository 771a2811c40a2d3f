"""The Medic engine driven by optimizer hooks instead of by the training loop.

Under ``trainmedic run`` the user's script still calls ``optimizer.step()``. PyTorch runs the global step
pre-hook first; there :meth:`RunMedic.pre_step` runs exactly what ``medic.step(loss)`` runs (signals in
one sync, detectors, heal actions), except that the optimizer step itself is left to the script: the
engine only *decides* whether it may proceed. The post-hook then finishes what must follow a real step
(the sampled update/weight ratio, zeroing gradients after the step when TM310 was healed, the snapshot
taken after a healthy step). So `run` and the `Medic` API share every detector and every heal action.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch

from trainmedic.config import Thresholds
from trainmedic.medic import Medic


class RunMedic(Medic):
    """A :class:`Medic` whose optimizer step and scheduler step are done by the user's script."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, mode: str,
                 thresholds: Thresholds | None = None, console: bool = True) -> None:
        super().__init__(model, optimizer, None, None, mode, thresholds=thresholds, console=console,
                         scheduler_interval="external")
        # No live status line: it would wrap the script's stdout on a terminal. Findings still print.
        self.console.status = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self._proceed = False
        self._deferred_after_update = False
        self._deferred_snapshot: int | None = None
        self._in_pre_step = False
        self._deferred_step_end: tuple[Any, ...] | None = None
        self._real_after_update = self._collector.after_update
        self._collector.after_update = self._defer_after_update  # type: ignore[method-assign]

    # -- the step is the script's: record the decision instead of stepping --------------------------
    def _optimizer_step(self) -> None:
        self._proceed = True

    def _scaler_step(self) -> None:
        # The script calls scaler.step(optimizer) and scaler.update() itself.
        self._proceed = True

    def _defer_after_update(self) -> None:
        self._deferred_after_update = True

    def _take_snapshot(self, t: int) -> None:
        if self._proceed:  # requested right after the (deferred) step: take it once the step is done
            self._deferred_snapshot = t
            return
        super()._take_snapshot(t)

    def _call(self, hook: str, *args: Any) -> None:
        # Callbacks see the end of a step once the script's optimizer has taken it, so that a checkpoint
        # written there holds the weights the step produced.
        if hook == "on_step_end" and self._in_pre_step:
            self._deferred_step_end = args
            return
        super()._call(hook, *args)

    def pre_step(self, loss: torch.Tensor, batch: Any = None) -> bool:
        """Run ``medic.step`` for a step the script is about to take; True if the step may proceed."""
        self._proceed = False
        self._deferred_after_update = False
        self._deferred_snapshot = None
        self._in_pre_step = True
        try:
            self.step(loss, batch)
        finally:
            self._in_pre_step = False
        return self._proceed

    def post_step(self) -> None:
        """The script's optimizer step has happened: finish what follows a step."""
        if self._deferred_after_update:
            self._deferred_after_update = False
            self._guard("update-ratio", self._real_after_update)
        if self._zero_after_step:
            self.optimizer.zero_grad(set_to_none=True)
        if self._deferred_snapshot is not None:
            t, self._deferred_snapshot = self._deferred_snapshot, None
            self._proceed = False
            super()._take_snapshot(t)
        self._proceed = False
        if self._deferred_step_end is not None:
            args, self._deferred_step_end = self._deferred_step_end, None
            super()._call("on_step_end", *args)


class ScriptScaler:
    """The script's GradScaler as the engine sees it: ``scaler.step()`` has already unscaled the gradients.

    The engine's own ``unscale_`` is a no-op; everything else (scale, state_dict for snapshots) is the
    script's scaler.
    """

    def __init__(self, scaler: Any) -> None:
        self.scaler = scaler

    def unscale_(self, optimizer: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scaler, name)


def script_scaler(scaler: Any) -> ScriptScaler | None:
    return None if scaler is None else scaler if isinstance(scaler, ScriptScaler) else ScriptScaler(scaler)


class ParamHolder(torch.nn.Module):
    """Stands for "the model" when no module seen in a forward pass holds all of an optimizer's parameters.

    It registers the very same Parameter objects, so snapshots and rollbacks act on the live weights.
    """

    def __init__(self, params: list[torch.nn.Parameter], names: list[str]) -> None:
        super().__init__()
        used: set[str] = set()
        for i, (p, name) in enumerate(zip(params, names)):
            key = re.sub(r"\W", "_", name) or f"param{i}"
            if key in used or hasattr(self, key):
                key = f"{key}_{i}"
            used.add(key)
            self.register_parameter(key, p)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel / DataParallel / torch.compile wrappers -> the module they train."""
    for _ in range(4):
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):
            module = inner
        else:
            break
    return module


def model_for(optimizer: torch.optim.Optimizer, seen: list[torch.nn.Module]) -> torch.nn.Module:
    """The module an optimizer trains, chosen among the modules seen in training forward passes.

    The outermost modules (those no other seen module contains) are candidates; the one that holds most
    of the optimizer's parameters, and the fewest others, wins. When none holds all of them, a
    :class:`ParamHolder` of the optimizer's parameters (named where a seen module names them) is used.
    """
    wanted = [p for g in optimizer.param_groups for p in g["params"] if isinstance(p, torch.Tensor)]
    ids = {id(p) for p in wanted}
    inner: set[int] = set()
    for m in seen:
        for sub in m.modules():
            if sub is not m:
                inner.add(id(sub))
    roots: list[torch.nn.Module] = []
    for m in seen:
        if id(m) in inner:
            continue
        m = unwrap(m)
        if all(m is not r for r in roots):
            roots.append(m)
    best, best_key = None, None
    names: dict[int, str] = {}
    for m in roots:
        own = {id(p): n for n, p in m.named_parameters()}
        cover = len(ids & own.keys())
        if cover == 0:
            continue
        for k, n in own.items():
            names.setdefault(k, n)
        key = (cover, -len(own))
        if best_key is None or key > best_key:
            best, best_key = m, key
    if best is not None and best_key is not None and best_key[0] == len(ids):
        return best
    return ParamHolder(wanted, [names.get(id(p), f"param{i}") for i, p in enumerate(wanted)])


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

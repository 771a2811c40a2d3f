"""``trainmedic lr-find``: a learning-rate range test inside the user's own, unmodified training script.

A range test needs the script's model, optimizer, batches and loss. Rebuilding them outside the script
would mean guessing how it calls its model and computes its loss, so the sweep runs *inside* the script
instead: the script runs as ``__main__`` exactly as ``trainmedic run`` runs it
(:mod:`~trainmedic.instrument.main_module`), and its own optimizer steps are the sweep's steps.

* ``Tensor.backward`` / ``torch.autograd.backward`` (wrapped, :mod:`~trainmedic.instrument.patches`) give the
  loss of each step (the mean of the scalar losses since the last step, so gradient accumulation gives one
  point per optimizer step; ``GradScaler.scale`` is wrapped so that the unscaled loss is read);
* the global optimizer step pre-hook (public API) sets the first optimizer's rate to point ``i`` of the
  exponential schedule (param groups keep their ratios) just before its step ``i``; the loss recorded with
  it is the one measured before that step, as in :func:`trainmedic.lr_find`;
* once the sweep is over (the last point, a NaN/Inf loss or the divergence stop of
  :class:`~trainmedic.lr_find.Sweep`), the model's state and the optimizer's state (rates included) are put
  back as they were at the first step, and :class:`SweepDone` is raised out of ``optimizer.step()``. It is a
  ``BaseException``, so the script's ``except Exception`` does not catch it; its ``finally`` blocks run and
  see the weights as they were before the sweep.

An optimizer stepped with a closure (``LBFGS.step(closure)``) evaluates the loss inside ``step()``, many
times per step: it is not swept, and the script is stopped at its first such step.

What the script does during the sweep happens: it prints, and a checkpoint it saves in those steps holds
swept weights. Other optimizers of the script (a GAN's second one) step at their own rate.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainmedic.instrument.discovery import model_for
from trainmedic.instrument.loops import compile_safe
from trainmedic.instrument.main_module import MainScript, resolve, run_main, set_path
from trainmedic.instrument.patches import Patches, recording_scale
from trainmedic.instrument.runner import exit_code, print_script_traceback
from trainmedic.lr_find import Sweep


class SweepDone(BaseException):
    """Raised out of the script's ``optimizer.step()`` once the sweep has its points: ends the script."""


@dataclass
class SweepOutcome:
    """What the sweep measured, and how the script ended."""

    lrs: list[float]
    losses: list[float]
    stopped: bool  # the sweep stopped early: the loss diverged or became NaN/Inf
    finished: bool  # the sweep took all its points (or stopped early): it ended the script
    ended: str  # how the script ended: "swept", "exited 3", "returned", "raised ValueError: ..."
    configured_lr: float | None = None
    optimizer: str | None = None  # type name of the swept optimizer
    model: str | None = None
    other_optimizers: int = 0
    optimizer_steps: int = 0  # optimizer steps the script took (all optimizers)
    steps_without_loss: int = 0  # steps of the swept optimizer with no backward() before them
    closure_steps: int = 0  # step(closure) calls (LBFGS): not swept, the script is stopped at the first
    problems: list[str] = field(default_factory=list)  # trainmedic's own failures (the sweep switched off)


class ScriptSweep:
    """The hooks of one ``lr-find`` run: install(), let the script run, uninstall(); see the module docs."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self.optimizer: torch.optim.Optimizer | None = None
        self.configured_lr: float | None = None
        self.model_name: str | None = None
        self.others: set[int] = set()
        self.steps = 0
        self.steps_without_loss = 0
        self.closure_steps = 0
        self.problems: list[str] = []
        self._ratios: list[float] = []
        self._saved: tuple[torch.nn.Module | None, dict[str, Any], dict[str, Any]] | None = None
        self._pending: list[float] = []
        self._scaled: tuple[torch.Tensor, torch.Tensor] | None = None
        self._seen: dict[int, torch.nn.Module] = {}
        self._patches = Patches()
        self._restored = False

    # -- install / uninstall ---------------------------------------------------------------------------
    def install(self) -> None:
        import torch.optim.optimizer as opt_mod
        from torch.nn.modules.module import register_module_forward_pre_hook

        def seen(module: torch.nn.Module, args: Any) -> None:
            if self.optimizer is None and torch.is_grad_enabled() and len(self._seen) < 10_000:
                self._seen.setdefault(id(module), module)

        self._patches.handles.append(opt_mod.register_optimizer_step_pre_hook(compile_safe(self._pre_step)))
        self._patches.handles.append(register_module_forward_pre_hook(compile_safe(seen)))
        self._patches.wrap(torch.Tensor, "backward", self._wrap_backward)
        self._patches.wrap(torch.autograd, "backward", self._wrap_backward)
        gs = getattr(torch.amp, "GradScaler", None)
        if gs is not None:
            self._patches.wrap(gs, "scale", self._wrap_scale)

    def uninstall(self) -> None:
        self._patches.remove()

    # -- the loss --------------------------------------------------------------------------------------
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(tensor, torch.Tensor) and tensor.numel() == 1 and not self.sweep.done:
                scaled = self._scaled
                loss = scaled[1] if scaled is not None and scaled[0] is tensor else tensor
                self._pending.append(float(loss.detach().float()))
            return original(tensor, *args, **kwargs)

        return backward

    def _wrap_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        return recording_scale(original, self._record_scaled)

    def _record_scaled(self, scaled: torch.Tensor, loss: torch.Tensor) -> None:
        self._scaled = (scaled, loss)

    # -- the optimizer step ----------------------------------------------------------------------------
    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self.sweep.done:  # the script caught SweepDone and went on: end it again
            raise SweepDone
        if self.optimizer is None:
            try:
                self._adopt(optimizer)
            except Exception as exc:
                self.problems.append(f"reading the optimizer raised {type(exc).__name__}: {exc}")
                self.sweep.stopped = True
                raise SweepDone from exc
        losses, self._pending = self._pending, []  # the losses since the last step, whichever optimizer's
        if optimizer is not self.optimizer:
            self.others.add(id(optimizer))  # a GAN's second optimizer: steps at its own rate, its loss dropped
            return
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer itself
        if callable(closure):
            self.closure_steps += 1  # LBFGS: the loss comes from inside step(), many times: not swept
            self.sweep.stopped = True
            raise SweepDone
        if not losses:
            self.steps_without_loss += 1
            return  # no backward() before this step (gradients set by hand): it runs at the current rate
        lr = self.sweep.lr(len(self.sweep.losses))
        if self.sweep.record(lr, sum(losses) / len(losses)):
            self.restore()
            raise SweepDone
        try:
            for g, r in zip(optimizer.param_groups, self._ratios):
                if isinstance(g["lr"], torch.Tensor):
                    g["lr"].fill_(lr * r)
                else:
                    g["lr"] = lr * r
        except Exception as exc:
            self.problems.append(f"setting the learning rate raised {type(exc).__name__}: {exc}")
            self.sweep.stopped = True
            self.restore()
            raise SweepDone from exc

    def _adopt(self, optimizer: torch.optim.Optimizer) -> None:
        """The first optimizer to step is the one swept: note its rates and snapshot what the sweep changes."""
        self.optimizer = optimizer
        groups = optimizer.param_groups
        base = float(groups[0]["lr"])
        self.configured_lr = base
        self._ratios = [float(g["lr"]) / base if base else 1.0 for g in groups]
        model: torch.nn.Module | None = None
        try:
            model = model_for(optimizer, list(self._seen.values()))
            self.model_name = type(model).__name__
        except Exception:
            model = None
        self._seen.clear()
        params = {str(i): p.detach().clone() for i, p in enumerate(q for g in groups for q in g["params"])}
        state = {k: v.detach().clone() for k, v in model.state_dict().items()} if model is not None else {}
        self._saved = (model, state, {"params": params, "optimizer": copy.deepcopy(optimizer.state_dict())})

    def restore(self) -> None:
        """Put the model and the optimizer back as they were at the first step (once)."""
        if self._saved is None or self._restored or self.optimizer is None:
            return
        self._restored = True
        model, state, saved = self._saved
        try:
            with torch.no_grad():
                for p, v in zip((q for g in self.optimizer.param_groups for q in g["params"]),
                                saved["params"].values()):
                    p.copy_(v)
                if model is not None and state:
                    model.load_state_dict(state)
            self.optimizer.load_state_dict(saved["optimizer"])
        except Exception as exc:
            self.problems.append(f"restoring the weights raised {type(exc).__name__}: {exc}")


def sweep_script(script: str, argv: list[str], sweep: Sweep) -> SweepOutcome:
    """Run ``script`` with ``argv`` as ``python`` would, sweeping its first optimizer; see the module docs.

    The script's own error before the sweep is over prints its traceback as python would, and the points
    measured until then are kept. A path that is not a Python script raises a one-line ``UsageError``.
    """
    path: MainScript = resolve(script)
    hooks = ScriptSweep(sweep)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [path.given, *argv]
    set_path(path)
    ended = "returned"
    hooks.install()
    try:
        run_main(path)
    except SweepDone:
        ended = "swept"
    except SystemExit as exc:
        ended = f"exited {exit_code(exc)}"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the script's own error: its traceback, as python prints it
        print_script_traceback(exc, path)
        ended = f"raised {type(exc).__name__}: {exc}"
    finally:
        hooks.uninstall()
        hooks.restore()
        sys.argv = saved_argv
        sys.path[:] = saved_path
    return SweepOutcome(
        lrs=sweep.lrs, losses=sweep.losses, stopped=sweep.stopped, finished=sweep.done, ended=ended,
        configured_lr=hooks.configured_lr,
        optimizer=type(hooks.optimizer).__name__ if hooks.optimizer is not None else None,
        model=hooks.model_name, other_optimizers=len(hooks.others), optimizer_steps=hooks.steps,
        steps_without_loss=hooks.steps_without_loss, closure_steps=hooks.closure_steps, problems=hooks.problems)


def finite_points(outcome: SweepOutcome) -> int:
    return sum(1 for v in outcome.losses if math.isfinite(v))


__all__ = ["ScriptSweep", "SweepDone", "SweepOutcome", "sweep_script"]

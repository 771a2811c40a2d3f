"""Zero-code instrumentation: the one place where trainmedic hooks into PyTorch on purpose.

Public hooks where PyTorch has them, thin wrappers where it does not:

* ``torch.optim.optimizer.register_optimizer_step_pre_hook`` / ``_post_hook`` (global): every
  ``optimizer.step()`` of the script runs the Medic engine first (:class:`~trainmedic.instrument.engine.RunMedic`,
  one per optimizer), and may be skipped (see below);
* ``Tensor.backward`` (wrapped): the loss of the step, as the engine needs it;
* ``torch.nn.functional`` losses (wrapped; the ``nn`` loss modules call them): losses computed without
  gradient are evaluation losses: when training resumes, their mean is the validation loss of an
  ``end_epoch`` (plateau TM308, overfitting TM309); the first training calls are kept for wiring checks;
* ``torch.nn.modules.module.register_module_forward_pre_hook`` / ``_hook`` (global), only while needed: the
  modules of the first forward passes (to find the model an optimizer trains), and one sampled forward pass
  every ``ACT_EVERY`` steps (ReLU activity, TM311);
* ``GradScaler.scale`` / ``GradScaler.step`` (wrapped): the unscaled loss, and the steps the scaler skips
  on overflow (TM314); ``LRScheduler.step`` / ``ReduceLROnPlateau.step`` (wrapped): the scheduler to snapshot
  with the weights, and a validation value; ``DataLoader.__iter__`` (wrapped): a training loader that starts
  again marks the end of an epoch.

Skipping a step from a pre-hook: PyTorch's pre-hooks cannot cancel ``step()``. When the engine decides
not to apply a step (heal mode: non-finite loss or gradients, rollback), the gradients are set to
``None`` before the step runs; torch.optim optimizers then leave every parameter and its state untouched
(documented behaviour of ``zero_grad(set_to_none=True)``). For any other optimizer the parameters and the
optimizer state are copied before the step and restored by the post-hook, so the step has no effect
either way.

Every hook body is guarded: an exception inside trainmedic switches that part off, is recorded as a
TM902 finding, and the script goes on as if trainmedic were not there.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainmedic.config import Thresholds
from trainmedic.findings import Finding
from trainmedic.instrument.engine import RunMedic, StepGate, model_for, script_scaler, unwrap
from trainmedic.rules.internal import INSTRUMENTATION_FAILED

#: losses in torch.nn.functional whose first two arguments are (input, target)
LOSS_FUNCTIONS = (
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "poisson_nll_loss", "gaussian_nll_loss",
    "kl_div", "soft_margin_loss", "multilabel_soft_margin_loss", "hinge_embedding_loss",
)
ACT_EVERY = 100  # a sampled forward pass every this many steps (ReLU activity)
DEAD_FRACTION = 0.9  # TM311: share of a ReLU layer's units never positive on a sampled batch ...
DEAD_SAMPLES = 3  # ... on this many samples in a row
WIRING_STEPS = 3  # training loss calls recorded for the wiring checks

_active: Session | None = None


def active_session() -> Session | None:
    return _active


class Session:
    """All instrumentation of one ``trainmedic run``: install(), let the script run, uninstall(), finish()."""

    def __init__(self, mode: str = "watch", *, console: bool = True,
                 thresholds: Thresholds | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                 checkpoint_every: int | None = None) -> None:
        self.mode = mode
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.console = console
        self.thresholds = thresholds
        self.engines: list[RunMedic] = []
        self._engine_of: dict[int, RunMedic | None] = {}  # id(optimizer) -> engine (None: not watched)
        self._optimizers: dict[int, Any] = {}  # keeps ids stable
        self._internal: list[Finding] = []
        self._off: set[str] = set()
        self._busy = False
        self._installed = False
        self._handles: list[Any] = []
        self._patches: list[tuple[Any, str, Any]] = []
        self.rank: int | None = None
        # the step
        self._last_loss: torch.Tensor | None = None
        self._scaled: tuple[torch.Tensor, torch.Tensor] | None = None
        self._step_calls = 0
        self._restore: dict[int, StepGate] = {}
        self._scaler_of: dict[int, Any] = {}
        self._sched_of: dict[int, Any] = {}
        self._sched_depth = 0
        # model discovery
        self._seen: dict[int, torch.nn.Module] = {}
        self._discover_handle: Any = None
        self._input_handle: Any = None
        self._last_input: Any = None
        self._last_target: Any = None
        # epochs and validation
        self._val_sum: torch.Tensor | float = 0.0
        self._val_n = 0
        self._explicit_val = False
        self._seen_val = False
        self._steps_since_epoch = 0
        self._last_loader: Any = None
        self._train_loader: Any = None
        # wiring observations (first training loss calls)
        self.loss_calls: list[dict[str, Any]] = []
        # activation sampling (TM311)
        self._act_handle: Any = None
        self._act_names: dict[int, str] = {}
        self._act_stats: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self._dead_runs: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------------
    # install / uninstall
    # ------------------------------------------------------------------------------------------------
    def install(self) -> None:
        global _active
        if self._installed:
            return
        self._installed = True
        _active = self
        import torch.nn.functional as F
        import torch.optim.lr_scheduler as sched
        import torch.optim.optimizer as opt_mod
        import torch.utils.data

        def attach(part: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as exc:  # that part stays off; the script runs without it
                self._fail(f"installing {part}", exc)

        attach("optimizer step hooks", lambda: self._handles.extend([
            opt_mod.register_optimizer_step_pre_hook(self._pre_step),
            opt_mod.register_optimizer_step_post_hook(self._post_step)]))
        attach("module forward hook", self._start_discovery)
        attach("Tensor.backward", lambda: self._wrap(torch.Tensor, "backward", self._wrap_backward))
        attach("torch.autograd.backward", lambda: self._wrap(torch.autograd, "backward", self._wrap_backward))
        for name in LOSS_FUNCTIONS:
            if hasattr(F, name):
                attach(f"F.{name}", lambda name=name: self._wrap(F, name, functools.partial(self._wrap_loss, name)))
        gs = getattr(torch.amp, "GradScaler", None)
        if gs is not None:
            attach("GradScaler.scale", lambda: self._wrap(gs, "scale", self._wrap_scale))
            attach("GradScaler.step", lambda: self._wrap(gs, "step", self._wrap_scaler_step))
        attach("LRScheduler.step", lambda: self._wrap(sched.LRScheduler, "step", self._wrap_sched_step))
        attach("ReduceLROnPlateau.step", lambda: self._wrap(sched.ReduceLROnPlateau, "step", self._wrap_plateau_step))
        attach("DataLoader.__iter__", lambda: self._wrap(torch.utils.data.DataLoader, "__iter__", self._wrap_loader_iter))

    def uninstall(self) -> None:
        global _active
        for owner, name, original in reversed(self._patches):
            if original is None:
                delattr(owner, name)  # it was inherited: remove the wrapper, the base's attribute shows again
            else:
                setattr(owner, name, original)
        self._patches.clear()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for h in (self._discover_handle, self._input_handle, self._act_handle):
            if h is not None:
                h.remove()
        self._discover_handle = self._input_handle = self._act_handle = None
        self._installed = False
        if _active is self:
            _active = None

    def _wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        own = not isinstance(owner, type) or name in owner.__dict__
        original = getattr(owner, name)
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        setattr(owner, name, wrapper)
        self._patches.append((owner, name, original if own else None))

    # ------------------------------------------------------------------------------------------------
    # guards
    # ------------------------------------------------------------------------------------------------
    def _fail(self, part: str, exc: BaseException) -> None:
        if part in self._off:
            return
        self._off.add(part)
        self._internal.append(Finding(
            code=INSTRUMENTATION_FAILED.code,
            message=f"{part} raised {type(exc).__name__}: {exc}; switched off, the script ran on without it",
            step=self.engines[0].step_count if self.engines else None,
            evidence={"part": part, "exception": repr(exc)},
        ))

    def _guarded(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        if part in self._off or self._busy:
            return None
        self._busy = True
        try:
            return fn(*args)
        except Exception as exc:
            self._fail(part, exc)
            return None
        finally:
            self._busy = False

    # ------------------------------------------------------------------------------------------------
    # optimizer step
    # ------------------------------------------------------------------------------------------------
    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._step_calls += 1
        self._guarded("optimizer step pre-hook", self._before_step, optimizer)
        return None

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._guarded("optimizer step post-hook", self._after_step, optimizer)

    def _engine(self, optimizer: torch.optim.Optimizer) -> RunMedic | None:
        key = id(optimizer)
        if key in self._engine_of:
            return self._engine_of[key]
        self._optimizers[key] = optimizer
        dist = torch.distributed
        if self.rank is None and dist.is_available() and dist.is_initialized():
            self.rank = dist.get_rank()
        try:
            model = model_for(optimizer, list(self._seen.values()))
            eng = RunMedic(model, optimizer, self.mode, thresholds=self.thresholds,
                           console=self.console and (self.rank or 0) == 0)
        except Exception as exc:
            self._engine_of[key] = None
            self._fail(f"engine for {type(optimizer).__name__} #{len(self._engine_of)}", exc)
            return None
        eng.scaler = script_scaler(self._scaler_of.get(key))
        eng.scheduler = self._sched_of.get(key)
        self._engine_of[key] = eng
        self.engines.append(eng)
        if self.checkpoint_dir is not None:
            from trainmedic.heal.checkpoint import CheckpointCallback

            where = Path(self.checkpoint_dir)
            if len(self.engines) > 1:  # a second optimizer (a GAN's) keeps its own checkpoints
                where = where / f"optimizer{len(self.engines) - 1}"
            eng.add_callback(CheckpointCallback(where, every=self.checkpoint_every))
        if len(self.engines) == 1:
            self._watch_inputs(model)
            self._act_names = {id(m): n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)}
        self._stop_discovery()
        return eng

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._restore.pop(id(optimizer), None)
        if self._act_handle is not None:
            self._end_activation_sample()
        if self._val_n:
            self._flush_val()  # training resumed after an evaluation: that was an epoch's end
        if self._train_loader is None and self._last_loader is not None:
            self._train_loader = self._last_loader
        eng = self._engine(optimizer)
        loss = self._last_loss
        if eng is None or loss is None:
            return
        gate = StepGate(optimizer)
        self._steps_since_epoch += 1
        proceed = eng.pre_step(loss, self._batch())
        if not proceed:
            gate.close()
            if gate.saved is not None:
                self._restore[id(optimizer)] = gate
        if eng is self.engines[0] and "activation sampling" not in self._off and eng.step_count % ACT_EVERY == 0:
            self._start_activation_sample()

    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        gate = self._restore.pop(id(optimizer), None)
        if gate is not None and gate.reopen():
            return
        eng = self._engine_of.get(id(optimizer))
        if eng is not None:
            eng.post_step()

    def _batch(self) -> Any:
        x, y = self._last_input, self._last_target
        if x is None:
            return None
        if isinstance(x, tuple) and len(x) == 1:
            x = x[0]
        return (x, y) if y is not None else x

    # ------------------------------------------------------------------------------------------------
    # backward, losses, AMP, schedulers, loaders
    # ------------------------------------------------------------------------------------------------
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not session._busy and "backward hook" not in session._off:
                try:
                    if isinstance(tensor, torch.Tensor) and tensor.numel() == 1:
                        scaled = session._scaled
                        session._last_loss = scaled[1] if scaled is not None and scaled[0] is tensor else tensor
                except Exception as exc:
                    session._fail("backward hook", exc)
            return original(tensor, *args, **kwargs)

        return backward

    def _wrap_loss(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def loss_fn(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if not session._busy and "loss hook" not in session._off:
                session._guarded("loss hook", session._saw_loss, name, args, kwargs, out)
            return out

        return loss_fn

    def _saw_loss(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        inp = args[0] if args else kwargs.get("input")
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if not isinstance(out, torch.Tensor) or not isinstance(inp, torch.Tensor):
            return
        if out.requires_grad and torch.is_grad_enabled():
            self._last_target = target
            if len(self.loss_calls) < WIRING_STEPS:
                self.loss_calls.append({
                    "loss": name, "input_shape": tuple(inp.shape), "input_dtype": str(inp.dtype),
                    "target_shape": tuple(target.shape) if isinstance(target, torch.Tensor) else None,
                    "target_dtype": str(target.dtype) if isinstance(target, torch.Tensor) else None,
                    "output_shape": tuple(out.shape),
                })
            return
        if self._explicit_val or out.numel() != 1 or not self.engines:
            return
        n = int(inp.shape[0]) if inp.dim() else 1
        self._val_sum = self._val_sum + out.detach().float() * n
        self._val_n += n

    def _wrap_scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def scale(scaler: Any, outputs: Any) -> Any:
            result = original(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and isinstance(result, torch.Tensor) and outputs.numel() == 1:
                session._scaled = (result, outputs)
            return result

        return scale

    def _wrap_scaler_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            if not session._busy:
                session._scaler_of[id(optimizer)] = scaler
                eng = session._engine_of.get(id(optimizer))
                if eng is not None and getattr(eng.scaler, "scaler", None) is not scaler:
                    eng.scaler = script_scaler(scaler)
            before = session._step_calls
            out = original(scaler, optimizer, *args, **kwargs)
            if session._step_calls == before and not session._busy and scaler.is_enabled():
                session._guarded("GradScaler hook", session._scaler_skipped, optimizer, scaler)
            return out

        return step

    def _scaler_skipped(self, optimizer: Any, scaler: Any) -> None:
        """The scaler found inf/NaN in the gradients and did not call optimizer.step(): tell the engine."""
        eng = self._engine(optimizer)
        if eng is None or self._last_loss is None:
            return
        eng.scaler = script_scaler(scaler)
        self._steps_since_epoch += 1
        eng.pre_step(self._last_loss, self._batch())
        eng.post_step()

    def _wrap_sched_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            if session._sched_depth == 0 and not session._busy:
                session._guarded("scheduler hook", session._saw_scheduler, scheduler)
            session._sched_depth += 1
            try:
                return original(scheduler, *args, **kwargs)
            finally:
                session._sched_depth -= 1

        return step

    def _saw_scheduler(self, scheduler: Any) -> None:
        opt = getattr(scheduler, "optimizer", None)
        if opt is None:
            return
        self._sched_of[id(opt)] = scheduler
        eng = self._engine_of.get(id(opt))
        if eng is not None:
            eng.scheduler = scheduler

    def _wrap_plateau_step(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def step(scheduler: Any, *args: Any, **kwargs: Any) -> Any:
            if session._busy:
                return None  # the engine's own end_epoch call: the script's call below does the stepping
            metrics = args[0] if args else kwargs.get("metrics")
            if metrics is not None:
                session._guarded("ReduceLROnPlateau hook", session._saw_plateau, scheduler, metrics)
            return original(scheduler, *args, **kwargs)

        return step

    def _saw_plateau(self, scheduler: Any, metrics: Any) -> None:
        self._saw_scheduler(scheduler)
        value = float(metrics.detach().item() if isinstance(metrics, torch.Tensor) else metrics)
        if getattr(scheduler, "mode", "min") == "max":
            self._epoch(val_metric=value, explicit=True)
        else:
            self._epoch(val_loss=value, explicit=True)

    def _wrap_loader_iter(self, original: Callable[..., Any]) -> Callable[..., Any]:
        session = self

        def __iter__(loader: Any) -> Any:
            if not session._busy:
                session._guarded("DataLoader hook", session._loader_started, loader)
            return original(loader)

        return __iter__

    def _loader_started(self, loader: Any) -> None:
        self._last_loader = loader
        if loader is self._train_loader and self._steps_since_epoch > 0 and not self._explicit_val:
            self._flush_val(always=True)  # the training loader starts again: a new epoch

    # ------------------------------------------------------------------------------------------------
    # epochs and validation
    # ------------------------------------------------------------------------------------------------
    def log(self, val_loss: Any = None, val_metric: Any = None, higher_is_better: bool = True) -> None:
        """``trainmedic.log(val_loss=...)``: an evaluation result; closes an epoch for every engine."""
        def to_float(v: Any) -> float | None:
            if v is None:
                return None
            return float(v.detach().item() if isinstance(v, torch.Tensor) else v)

        if self._busy:
            return
        self._guarded("trainmedic.log", lambda: self._epoch(val_loss=to_float(val_loss),
                                                            val_metric=to_float(val_metric),
                                                            higher_is_better=higher_is_better, explicit=True))

    def _flush_val(self, always: bool = False) -> None:
        """Close an epoch with the pending evaluation losses; with ``always``, also without any, unless
        this run reports validation values (then an epoch without one would mix training losses in)."""
        if self._val_n:
            val = float(self._val_sum / self._val_n)
            self._val_sum, self._val_n = 0.0, 0
            self._seen_val = True
            self._epoch(val_loss=val)
        elif always and not self._seen_val and not self._explicit_val:
            self._epoch()

    def _epoch(self, *, explicit: bool = False, **kwargs: Any) -> None:
        if explicit:
            self._explicit_val = True
            self._val_sum, self._val_n = 0.0, 0
        self._steps_since_epoch = 0
        for eng in self.engines:
            eng.end_epoch(**kwargs)

    # ------------------------------------------------------------------------------------------------
    # forward hooks: model discovery, inputs, sampled activations
    # ------------------------------------------------------------------------------------------------
    def _start_discovery(self) -> None:
        from torch.nn.modules.module import register_module_forward_pre_hook

        def seen(module: torch.nn.Module, args: Any) -> None:
            if torch.is_grad_enabled() and not self._busy and len(self._seen) < 10_000:
                self._seen.setdefault(id(module), module)

        self._discover_handle = register_module_forward_pre_hook(seen)

    def _stop_discovery(self) -> None:
        if self._discover_handle is not None:
            self._discover_handle.remove()
            self._discover_handle = None

    def _watch_inputs(self, model: torch.nn.Module) -> None:
        """Keep a reference to the model's latest training input (no copy), for forensics on a bad step."""
        outer = [m for m in self._seen.values() if unwrap(m) is model] or [model]

        def keep(module: torch.nn.Module, args: Any) -> None:
            if torch.is_grad_enabled():
                self._last_input = args

        if isinstance(model, torch.nn.Module) and any(True for _ in model.parameters()):
            self._input_handle = outer[0].register_forward_pre_hook(keep)

    def _start_activation_sample(self) -> None:
        if not self._act_names or self._act_handle is not None:
            return
        from torch.nn.modules.module import register_module_forward_hook

        def sample(module: torch.nn.Module, args: Any, output: Any) -> None:
            name = self._act_names.get(id(module))
            if name is None or self._busy or not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
                return
            try:
                with torch.no_grad():
                    out = output.detach()
                    if out.dim() < 2:
                        return
                    units = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() > 2 else out.t()
                    alive = (units > 0).any(dim=1)
                    self._act_stats.append((name, 1.0 - alive.float().mean(), torch.isfinite(out).all()))
            except Exception as exc:
                self._fail("activation sampling", exc)

        self._act_handle = register_module_forward_hook(sample)

    def _end_activation_sample(self) -> None:
        self._act_handle.remove()
        self._act_handle = None
        stats, self._act_stats = self._act_stats, []
        if not stats or not self.engines:
            return
        values = torch.stack([torch.stack([d.float(), f.float()]) for _, d, f in stats]).tolist()
        eng = self.engines[0]
        for (name, _, _), (dead, finite) in zip(stats, values):
            if not finite:
                continue
            if dead >= DEAD_FRACTION:
                self._dead_runs[name] = self._dead_runs.get(name, 0) + 1
            else:
                self._dead_runs[name] = 0
            if self._dead_runs[name] == DEAD_SAMPLES:
                eng.report("TM311", f"{dead:.0%} of the units of ReLU layer '{name}' were never positive on "
                           f"{DEAD_SAMPLES} sampled batches in a row",
                           evidence={"layer": name, "dead_fraction": dead, "samples": DEAD_SAMPLES,
                                     "sample_every": ACT_EVERY}, key=f"TM311:{name}")

    # ------------------------------------------------------------------------------------------------
    # the end
    # ------------------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Close the last epoch once the script has finished (called after uninstall())."""
        try:
            if self._act_handle is not None:
                self._end_activation_sample()
            if self._val_n or self._steps_since_epoch > 0:
                self._busy = True
                self._flush_val(always=True)
        except Exception as exc:
            self._fail("final epoch", exc)
        finally:
            self._busy = False

    def findings(self) -> list[Finding]:
        """Every engine's findings and the instrumentation's own, ordered by first occurrence."""
        out: list[Finding] = []
        for i, eng in enumerate(self.engines):
            for f in eng.findings:
                if len(self.engines) > 1:
                    f.evidence.setdefault("optimizer", i)
                out.append(f)
        out.extend(self._internal)
        out = list({id(f): f for f in out}.values())  # write_outputs adds them to the primary log too
        return sorted(out, key=lambda f: (f.step if f.step is not None else math.inf))

    def writes_files(self) -> bool:
        rank = self.rank if self.rank is not None else int(os.environ.get("RANK", "0") or 0)
        return rank == 0

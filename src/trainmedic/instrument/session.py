"""Zero-code instrumentation: the one place where trainmedic hooks into PyTorch on purpose.

Public hooks where PyTorch has them, thin wrappers (:mod:`~trainmedic.instrument.patches`) where it does not:

* ``torch.optim.optimizer.register_optimizer_step_pre_hook`` / ``_post_hook`` (global): every
  ``optimizer.step()`` of the script is judged first by that optimizer's driver (one per optimizer, see
  :mod:`~trainmedic.instrument.hooked`) and may be made a no-op;
* ``Tensor.backward`` and ``torch.autograd.backward`` (wrapped): the loss of the step;
* ``torch.nn.functional`` losses (wrapped; the ``nn`` loss modules call them): losses computed without
  gradient are evaluation losses (:mod:`~trainmedic.instrument.epochs`); the first training calls are kept
  for the wiring checks; the latest target goes with the batch for pre-flight and forensics; in heal mode,
  the first steps' calls rebuild the loss for the rate audit and the probe replay
  (:mod:`~trainmedic.instrument.loss_rebuild`, with a global forward hook on the model until decided);
* ``torch.nn.modules.module.register_module_forward_pre_hook`` (global), only until the first optimizer
  step: the modules of the first forward passes, to find the model an optimizer trains; then a forward
  pre-hook on that model keeps a reference to its latest training input;
* closure steps (LBFGS), loops without an optimizer object (each ``backward()`` a step; ``Optimizer.__init__``
  wrapped), ``torch.compile`` (wrapped: no hook in compiled code): :mod:`~trainmedic.instrument.loops`;
* ``GradScaler.scale`` / ``GradScaler.step`` (wrapped): the unscaled loss, and the steps the scaler skips
  on overflow (TM314); ``LRScheduler.step`` / ``ReduceLROnPlateau.step`` (wrapped): the scheduler to
  snapshot with the weights, and a validation value; ``DataLoader.__iter__`` (wrapped): a training loader
  that starts again marks the end of an epoch.

Skipping a step from a pre-hook: PyTorch's pre-hooks cannot cancel ``step()``; :class:`StepGate` makes it a
no-op (see :mod:`~trainmedic.instrument.hooked`).

Every hook body is guarded: an exception inside trainmedic switches that part off, is recorded as a
TM902 finding, and the script goes on as if trainmedic were not there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainmedic.config import Thresholds
from trainmedic.driver import Driver
from trainmedic.findings import Finding
from trainmedic.instrument.batch_indices import BatchIndices
from trainmedic.instrument.discovery import model_for
from trainmedic.instrument.epochs import EpochTracker
from trainmedic.instrument.hooked import HookedRun
from trainmedic.instrument.loops import LoopWatching, compile_safe
from trainmedic.instrument.loss_rebuild import LossRebuild
from trainmedic.instrument.patches import Patches
from trainmedic.instrument.phases import PhaseWatching
from trainmedic.instrument.rebuilding import RebuildWatching
from trainmedic.instrument.scaler import ScalerWatching
from trainmedic.instrument.schedules import ScheduleWatching
from trainmedic.observe.graph import LossCall, read_loss_graph
from trainmedic.observe.live import LiveChecks, Observed
from trainmedic.replay import user_location
from trainmedic.report.files import merged_findings
from trainmedic.rules.internal import INSTRUMENTATION_FAILED
from trainmedic.signals import clipping

#: losses in torch.nn.functional whose first two arguments are (input, target)
LOSS_FUNCTIONS = (
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "poisson_nll_loss", "gaussian_nll_loss",
    "kl_div", "soft_margin_loss", "multilabel_soft_margin_loss", "hinge_embedding_loss",
)
WIRING_STEPS = 3  # training loss calls recorded for the wiring checks

_active: Session | None = None


def coming_step(observed: Observed | None, observing: bool, graph_of: torch.Tensor | None = None,
                call: tuple[str, Any, Any, dict[str, Any]] | None = None) -> Observed | None:
    """Add to what the coming step showed, when the live checks will look at it (``observing``): the loss
    graph, read at ``backward()`` before it frees the loss nodes' tensors, and the functional loss calls."""
    if observed is None:
        if not observing:
            return None
        observed = Observed()
    if graph_of is not None and observed.graph is None and graph_of.grad_fn is not None:
        observed.graph = read_loss_graph(graph_of)
    if call is not None and isinstance(call[2], torch.Tensor) and len(observed.calls) < 8:
        name, inp, target, kwargs = call
        kw = {k: v for k, v in kwargs.items() if k in ("ignore_index", "reduction")}
        observed.calls.append(LossCall(name, inp, target, tuple(inp.shape), tuple(target.shape), kwargs=kw,
                                       where=user_location(), source="call"))
    return observed


def active_session() -> Session | None:
    return _active


class Session(LoopWatching, ScheduleWatching, PhaseWatching, RebuildWatching, ScalerWatching):
    """All instrumentation of one ``trainmedic run``: install(), let the script run, uninstall(), finish()."""

    def __init__(self, mode: str = "watch", *, console: bool = True,
                 thresholds: Thresholds | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                 checkpoint_every: int | None = None) -> None:
        self.mode = mode
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.run = HookedRun(mode, thresholds, console, name="trainmedic run", status=console)
        self.epochs = EpochTracker(self.run.end_epoch)
        self.internal: list[Finding] = []  # the instrumentation's own failures (TM902)
        self.loss_calls: list[dict[str, Any]] = []  # the first training loss calls (wiring checks)
        self.rank: int | None = None
        self._patches = Patches()
        self._off: set[str] = set()
        self._busy = False
        self._installed = False
        self._unwatched: set[int] = set()  # optimizers whose driver could not be built
        self._last_loss: torch.Tensor | None = None
        self._scaled: tuple[torch.Tensor, torch.Tensor] | None = None
        self._step_calls = 0
        self._scaler_of: dict[int, Any] = {}
        self._sched_of: dict[int, Any] = {}
        self._sched_depth = 0
        self._seen: dict[int, torch.nn.Module] = {}  # modules of training forward passes (model discovery)
        self._discover_handle: Any = None
        self._input_handle: Any = None
        self._last_input: Any = None
        self._raised_judged = False  # a raising loss had its batch read (script_raised need not again)
        self._last_target: Any = None
        self._observed: Observed | None = None  # what the coming step showed before its backward
        self._input_module: torch.nn.Module | None = None  # the module whose inputs are kept (_watch_inputs)
        self.rebuild = LossRebuild()  # heal: the script's loss for the replays on copies, rebuilt where faithful
        self.indices = BatchIndices(self._patches.wrap)  # dataset indices of the loaders' batches (TM313)
        self._init_loops(console)  # closure steps, hand-written updates, torch.compile (LoopWatching)
        self._init_phases()  # a later optimizer starts a new training phase (PhaseWatching)

    @property
    def drivers(self) -> list[Driver]:
        return self.run.drivers

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

        wrap = self._patches.wrap
        attach("optimizer step hooks", lambda: self._patches.handles.extend([
            opt_mod.register_optimizer_step_pre_hook(compile_safe(self._pre_step)),
            opt_mod.register_optimizer_step_post_hook(compile_safe(self._post_step))]))
        attach("module forward hook", self._start_discovery)
        attach("Tensor.backward", lambda: wrap(torch.Tensor, "backward", self._wrap_backward))
        attach("torch.autograd.backward", lambda: wrap(torch.autograd, "backward", self._wrap_backward))
        for name in LOSS_FUNCTIONS:
            if hasattr(F, name):
                attach(f"F.{name}", lambda name=name: wrap(F, name, lambda orig: self._wrap_loss(name, orig)))
        gs = getattr(torch.amp, "GradScaler", None)
        if gs is not None:
            attach("GradScaler.scale", lambda: wrap(gs, "scale", self._wrap_scale))
            attach("GradScaler.step", lambda: wrap(gs, "step", self._wrap_scaler_step))
        attach("LRScheduler.step", lambda: wrap(sched.LRScheduler, "step", self._wrap_sched_step))
        # schedulers that define their own `step` never pass through LRScheduler.step (not even in their
        # constructor): without these, a CosineAnnealingWarmRestarts was unknown to `run` (a false TM319 at its
        # warm restart, benchmarks/fresh3 sgdr_imbalanced)
        for own in ("CosineAnnealingWarmRestarts", "SequentialLR", "ChainedScheduler"):
            if "step" in vars(getattr(sched, own, object)):
                attach(f"{own}.step", lambda own=own: wrap(getattr(sched, own), "step", self._wrap_sched_step))
        attach("ReduceLROnPlateau.step", lambda: wrap(sched.ReduceLROnPlateau, "step", self._wrap_plateau_step))
        attach("DataLoader.__iter__", lambda: wrap(torch.utils.data.DataLoader, "__iter__", self._wrap_loader_iter))
        self._install_loops(attach, wrap)
        attach("clip_grad_norm_/clip_grad_value_", clipping.watch)  # from the start: TM303 knows the clip bound

    def uninstall(self) -> None:
        global _active
        if self._installed and "installing clip_grad_norm_/clip_grad_value_" not in self._off:
            clipping.unwatch()
        self._patches.remove()
        self.rebuild.stop()
        for h in (self._discover_handle, self._input_handle):
            if h is not None:
                h.remove()
        self._discover_handle = self._input_handle = None
        self._installed = False
        if _active is self:
            _active = None

    # ------------------------------------------------------------------------------------------------
    # guards
    # ------------------------------------------------------------------------------------------------
    def _fail(self, part: str, exc: BaseException) -> None:
        if part in self._off:
            return
        self._off.add(part)
        self.internal.append(Finding(
            code=INSTRUMENTATION_FAILED.code,
            message=f"{part} raised {type(exc).__name__}: {exc}; switched off, the script ran on without it",
            step=self.drivers[0].step_count if self.drivers else None,
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
    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        self._step_calls += 1
        wrapped = self._closure_step(optimizer, args, kwargs)  # step(closure): judged in its first call
        if wrapped is None:
            self._guarded("optimizer step pre-hook", self._before_step, optimizer)
        return wrapped

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._guarded("optimizer step post-hook", self.run.after_step, optimizer)

    def _driver(self, optimizer: torch.optim.Optimizer) -> Driver | None:
        driver = self.run.driver_of(optimizer)
        if driver is not None or id(optimizer) in self._unwatched:
            return driver
        dist = torch.distributed
        if self.rank is None and dist.is_available() and dist.is_initialized():
            self.rank = dist.get_rank()
        try:
            model = model_for(optimizer, list(self._seen.values()))
            driver = self.run.add(model, optimizer, scheduler=self._sched_of.get(id(optimizer)),
                                  scaler=self._scaler_of.get(id(optimizer)),
                                  console=self.run.console and (self.rank or 0) == 0)
        except Exception as exc:
            self._unwatched.add(id(optimizer))
            self._fail(f"engine for {type(optimizer).__name__} #{len(self.drivers) + len(self._unwatched)}", exc)
            return None
        if self.checkpoint_dir is not None:
            from trainmedic.heal.checkpoint import CheckpointCallback

            where = Path(self.checkpoint_dir)
            if len(self.drivers) > 1:  # a second optimizer (a GAN's) keeps its own checkpoints
                where = where / f"optimizer{len(self.drivers) - 1}"
            driver.add_callback(CheckpointCallback(where, every=self.checkpoint_every))
        self._attach_driver(driver, model)
        self._start_rebuild(driver)
        return driver

    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.epochs.training_step()
        self._rebuild_step(optimizer)
        driver = self._driver(optimizer)
        observed, self._observed = self._observed, None
        if driver is None or self._last_loss is None:
            return
        self.run.before_step(optimizer, self._last_loss, self._batch(driver), self._complete(observed, driver))

    def _batch(self, driver: Driver | None = None) -> Any:
        """The latest training input and target, for the driver whose model the input was captured for
        (the primary one: the first, or the current phase's; ``None``: whichever asks, a hand-written loop's)."""
        x, y = self._last_input, self._last_target
        if x is None or (driver is not None and driver is not self.primary):
            return None
        if isinstance(x, tuple) and len(x) == 1:
            x = x[0]
        if y is None or "batch indices" in self._off:
            return (x, y) if y is not None else x
        try:
            idx = self.indices.lookup(x, y)  # the dataset rows of a DataLoader's batch, if known
        except Exception as exc:  # called inside a guarded hook: record it, go on without indices
            idx = None
            self._fail("batch indices", exc)
        return (x, y, idx) if idx is not None else (x, y)

    # ------------------------------------------------------------------------------------------------
    # backward, losses, AMP, schedulers, loaders
    # ------------------------------------------------------------------------------------------------
    def _wrap_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not self._busy and "backward hook" not in self._off:
                try:
                    if isinstance(tensor, torch.Tensor) and tensor.numel() == 1:
                        scaled = self._scaled
                        self._last_loss = scaled[1] if scaled is not None and scaled[0] is tensor else tensor
                        # the graph of the loss the engine judges (unscaled under a GradScaler: its
                        # loss node is the same, and the constant level is in the loss's own units)
                        self._observed = coming_step(self._observed, self.observing_next, graph_of=self._last_loss)
                        if self._backward_depth == 0:  # Tensor.backward calls torch.autograd.backward: once
                            self._rebuilding(self.rebuild.saw_backward, self._last_loss)
                except Exception as exc:
                    self._fail("backward hook", exc)
            return self._backward_watched(original, tensor, *args, **kwargs)

        return backward

    def _wrap_loss(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def loss_fn(*args: Any, **kwargs: Any) -> Any:
            try:
                out = original(*args, **kwargs)
            except Exception:  # the script's own error: name the rows behind it, then let it go on unchanged
                if not self._busy and "loss hook" not in self._off:
                    self._guarded("loss hook", self._loss_raised, args, kwargs)
                raise
            if not self._busy and "loss hook" not in self._off:
                self._guarded("loss hook", self._saw_loss, name, args, kwargs, out, original)
            return out

        return loss_fn

    def _saw_loss(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
                  original: Callable[..., Any]) -> None:
        inp = args[0] if args else kwargs.get("input")
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if not isinstance(out, torch.Tensor) or not isinstance(inp, torch.Tensor):
            return
        if out.requires_grad and torch.is_grad_enabled():
            self._last_target = target
            self._observed = coming_step(self._observed, self.observing_next, call=(name, inp, target, kwargs))
            self._rebuilding(self.rebuild.saw_call, name, original, args, kwargs, out)
            if len(self.loss_calls) < WIRING_STEPS:
                self.loss_calls.append({
                    "loss": name, "input_shape": tuple(inp.shape), "input_dtype": str(inp.dtype),
                    "target_shape": tuple(target.shape) if isinstance(target, torch.Tensor) else None,
                    "target_dtype": str(target.dtype) if isinstance(target, torch.Tensor) else None,
                    "output_shape": tuple(out.shape),
                })
            return
        if out.numel() == 1 and self.drivers:
            self.epochs.eval_loss(out, int(inp.shape[0]) if inp.dim() else 1)

    def _loss_raised(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A training loss raised (``binary_cross_entropy`` on a NaN or a -9999 sentinel): the data checks
        judge the batch now, since no step will follow to do it."""
        target = args[1] if len(args) > 1 else kwargs.get("target")
        if not torch.is_grad_enabled():
            return
        self._judge_raised_batch(target, "the loss function raised")

    def script_raised(self) -> None:
        """The script is ending on an exception no wrapped loss saw: one raised inside the model's forward
        (``torch.distributions.Categorical(logits=...)`` rejects a NaN before any loss exists; benchmarks/
        fresh3 mdn_mixture with a NaN row got no finding under ``run``). The last training forward's input is
        read as ``Medic.__exit__`` reads it. Called by the runner before the script's traceback is printed."""
        if self._raised_judged:
            return  # the loss's own exception already had its batch read
        self._guarded("script raised", self._judge_raised_batch, None, "the training script raised")

    def _judge_raised_batch(self, target: Any, when: str) -> None:
        self._raised_judged = True
        x = self._last_input[0] if isinstance(self._last_input, tuple) and self._last_input else self._last_input
        driver = self.primary
        if driver is not None:
            driver.live.loss_raised(driver.step_count, (x, target), driver.report, when=when)
            return

        def report(code: str, message: str, *, step: int | None = None, evidence: Any = None, key: Any = None) -> None:
            self.internal.append(Finding(code=code, message=message, step=step, evidence=dict(evidence or {})))

        LiveChecks(None, None).loss_raised(0, (x, target), report, when=when)  # the very first step: no driver yet

    def _wrap_loader_iter(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __iter__(loader: Any) -> Any:
            if self._busy:
                return original(loader)
            self._guarded("DataLoader hook", self.epochs.loader_started, loader)
            self._guarded("batch indices", self.indices.before_iter, loader)
            iterator = original(loader)
            self._guarded("batch indices", self.indices.after_iter, loader, iterator)
            return iterator

        return __iter__

    def log(self, val_loss: Any = None, val_metric: Any = None, higher_is_better: bool = True) -> None:
        """``trainmedic.log(val_loss=...)``: an evaluation result; closes an epoch for every driver."""
        def to_float(v: Any) -> float | None:
            if v is None:
                return None
            return float(v.detach().item() if isinstance(v, torch.Tensor) else v)

        self._guarded("trainmedic.log", lambda: self.epochs.explicit_value(
            val_loss=to_float(val_loss), val_metric=to_float(val_metric), higher_is_better=higher_is_better))

    # ------------------------------------------------------------------------------------------------
    # forward hooks: model discovery, inputs
    # ------------------------------------------------------------------------------------------------
    def _start_discovery(self) -> None:
        from torch.nn.modules.module import register_module_forward_pre_hook

        def seen(module: torch.nn.Module, args: Any) -> None:
            if torch.is_grad_enabled() and not self._busy and len(self._seen) < 10_000:
                self._seen.setdefault(id(module), module)
                self._seen_args[id(module)] = args  # no copy; dropped when discovery stops (a first step)

        self._discover_handle = register_module_forward_pre_hook(compile_safe(seen))

    def _stop_discovery(self) -> None:
        if self._discover_handle is not None:
            self._discover_handle.remove()
            self._discover_handle = None

    # ------------------------------------------------------------------------------------------------
    # the end
    # ------------------------------------------------------------------------------------------------
    def finish(self, exit_code: int = 0) -> None:
        """Close the last epoch once the script has finished (after uninstall()); ``exit_code`` is the script's
        (TM903 tells a script that stopped on an error from one that trained nothing)."""
        self._guarded("hand-written updates", self.manual.finish)
        self._busy = True
        try:
            self.epochs.finish()
        except Exception as exc:
            self._busy = False
            self._fail("final epoch", exc)
        finally:
            self._busy = False
        self._guarded("end of training", self.run.finish)
        self._report_nothing_watched(exit_code)

    def findings(self) -> list[Finding]:
        """Every driver's findings and the instrumentation's own, ordered by first occurrence."""
        return merged_findings(self.drivers, [*self.run.internal, *self.internal])

    def writes_files(self) -> bool:
        rank = self.rank if self.rank is not None else int(os.environ.get("RANK", "0") or 0)
        return rank == 0

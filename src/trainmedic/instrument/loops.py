"""The part of a ``trainmedic run`` session that makes sure every training loop is watched, and that keeps
the session's hooks out of compiled code.

* a step that takes a closure (``LBFGS``, ``opt.step(closure)``): the optimizer's pre-hook hands it a wrapped
  closure, and the step is judged on the loss and gradients of its own first closure call, before any
  update (so the first step counts, and no step is judged on the previous one's loss);
* a loop without an optimizer object (``p.data.add_(p.grad, alpha=-lr)``): its steps are its backward
  passes (:mod:`~trainmedic.instrument.manual`); ``Optimizer.__init__`` is wrapped to know which tensors an
  optimizer holds, so an ordinary loop is never taken for one;
* ``torch.compile`` (wrapped): what the script compiles (:mod:`~trainmedic.instrument.compiled`); the global
  module hook goes before compiled code first runs, and checks whose hooks would run inside it step aside
  with an info finding (TM904);
* at the end, a run in which no step was judged says so (TM903), never an empty list of findings.

:class:`LoopWatching` is a mixin of :class:`~trainmedic.instrument.session.Session`, kept in its own module
so that each part of the session stays readable on its own; it uses the session attributes declared below.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from trainmedic.driver import Driver
from trainmedic.findings import Finding
from trainmedic.instrument.compiled import CompiledCode
from trainmedic.instrument.discovery import unwrap
from trainmedic.instrument.epochs import EpochTracker
from trainmedic.instrument.hooked import HookedRun
from trainmedic.instrument.loss_rebuild import LossRebuild
from trainmedic.instrument.manual import ManualLoop, ManualUpdates
from trainmedic.rules.internal import NOTHING_WATCHED


def compile_safe(hook: Callable[..., Any]) -> Callable[..., Any]:
    """A hook that does nothing while dynamo traces (``torch.compiler.is_compiling()``): nothing of
    trainmedic enters a compiled graph, and a hook returning None changes nothing."""
    def hook_outside_compiled_code(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return None
        return hook(*args, **kwargs)

    return hook_outside_compiled_code


class LoopWatching:
    """Closure steps, hand-written update loops, torch.compile and the nothing-watched check (module docstring)."""

    # provided by Session
    mode: str
    run: HookedRun
    epochs: EpochTracker
    internal: list[Finding]
    _seen: dict[int, torch.nn.Module]
    _step_calls: int
    _last_loss: torch.Tensor | None
    _busy: bool
    _off: set[str]
    _unwatched: set[int]
    _batch: Callable[[], Any]
    _guarded: Callable[..., Any]
    _stop_discovery: Callable[[], None]
    _before_step: Callable[..., None]
    _input_handle: Any
    _input_module: torch.nn.Module | None
    _last_input: Any
    rebuild: LossRebuild
    drivers: list[Driver]
    _opens_phase: Callable[[torch.optim.Optimizer], bool]
    _start_phase: Callable[[Driver, torch.nn.Module], None]
    _optimizer_built: Callable[[torch.optim.Optimizer], None]

    def _init_loops(self, console: bool) -> None:
        self.compiled = CompiledCode()
        self._optimizers: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        self._backward_depth = 0
        self._backwards = 0
        self._seen_args: dict[int, Any] = {}  # discovery's latest args per module until it stops: the first batch
        self.manual = ManualLoop(self.run, self.epochs.training_step, self._seen, self._batch, self._optimizers,
                                 lambda: self._step_calls, self._attach_driver, heal=self.mode == "heal",
                                 console=console)

    def _install_loops(self, attach: Callable[[str, Callable[[], Any]], None],
                       wrap: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
        attach("Optimizer.__init__", lambda: wrap(torch.optim.Optimizer, "__init__", self._wrap_optimizer_init))
        attach("torch.compile", lambda: wrap(torch, "compile", self._wrap_compile))

    def _attach_driver(self, driver: Driver, model: torch.nn.Module) -> None:
        """A new driver watches steps: keep out of compiled code, keep the first model's inputs (or those of a
        new training phase's model, :mod:`~trainmedic.instrument.phases`), stop discovery."""
        self._compiled_step_aside(driver, model)
        if all(d is driver or d is self.manual.on_trial for d in self.drivers):  # the first model watched
            self._watch_inputs(model)
        elif self._opens_phase(driver.optimizer):
            self._start_phase(driver, model)
        self._stop_discovery()
        self._seen_args.clear()

    # -- closure steps ---------------------------------------------------------------------------------
    def _closure_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        """For ``step(closure)``: the (args, kwargs) the pre-hook returns, with the closure wrapped; else None."""
        closure = args[1] if len(args) > 1 else kwargs.get("closure")  # args[0] is the optimizer itself
        if not callable(closure) or "closure steps" in self._off or self._busy:
            return None
        return self._guarded("closure steps", self._closure_args, optimizer, closure, args, kwargs)

    def _closure_args(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any], args: Any,
                      kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """On its first call the wrapped closure runs the script's closure, then judges the step on that loss
        and those gradients; later calls (LBFGS's line search) pass through. Optimizer step pre-hooks may
        return new (args, kwargs) (``register_optimizer_step_pre_hook``)."""
        calls = [0]

        def judged_closure() -> Any:
            calls[0] += 1
            if calls[0] > 1:
                return closure()
            before = self._last_loss
            out = closure()
            if self._last_loss is before and isinstance(out, torch.Tensor):
                self._last_loss = out  # its backward() was not seen (the step's loss is what it returns)
            self._guarded("optimizer step pre-hook", self._before_step, optimizer)
            return out

        if len(args) > 1:
            return (args[0], judged_closure, *args[2:]), kwargs
        return args, {**kwargs, "closure": judged_closure}

    # -- loops without an optimizer object ----------------------------------------------------------------
    def _backward_watched(self, original: Callable[..., Any], tensor: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``original`` (``Tensor.backward`` or ``torch.autograd.backward``) with the hand-written-update
        watch around it; ``Tensor.backward`` calls ``torch.autograd.backward``: counted once."""
        outer = self._backward_depth == 0
        if outer:
            self._around_backward(tensor, before=True)
        self._backward_depth += 1
        try:
            out = original(tensor, *args, **kwargs)
        finally:
            self._backward_depth -= 1
        if outer:
            self._around_backward(tensor, before=False)
        return out

    def _around_backward(self, tensor: Any, before: bool) -> None:
        if self._busy:
            return
        if not before:
            self._backwards += 1
        if self.manual.off:
            return  # an optimizer holds what this loop trains: its hooks watch it
        if before:
            self._guarded("hand-written updates", self.manual.before_backward)
        else:
            self._guarded("hand-written updates", self.manual.after_backward, tensor)

    def _wrap_optimizer_init(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            if not isinstance(optimizer, ManualUpdates):
                self._optimizers.add(optimizer)
                self._guarded("training phases", self._optimizer_built, optimizer)

        return __init__

    # -- torch.compile -----------------------------------------------------------------------------------
    def _wrap_compile(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def compile_(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            target = args[0] if args else kwargs.get("model")
            self._guarded("torch.compile hook", self._saw_compile, target, result)
            return result

        return compile_

    def _saw_compile(self, target: Any, result: Any) -> None:
        """The script compiled something: no global module hook from now on, no hook in compiled code."""
        self.compiled.saw(target, result)
        self.rebuild.stop("the script compiled code")  # its global forward hook must not stay either
        for module in (result, getattr(target, "__self__", None)):
            if isinstance(module, torch.nn.Module):
                self._seen.setdefault(id(module), module)  # a candidate model for discovery
        self._stop_discovery()
        self._seen_args.clear()  # args seen before the compile may not be the first step's
        if self._input_handle is not None:  # compiled after training began: a global hook must not stay
            self._input_handle.remove()
            self._input_handle = None
            first = [d for d in self.drivers if d is not self.manual.on_trial][:1]
            for driver in first:
                self._watch_inputs(driver.model)
        for driver in self.drivers:
            self._compiled_step_aside(driver, driver.model)

    def _compiled_step_aside(self, driver: Driver, model: torch.nn.Module) -> None:
        """Checks whose hooks would run inside compiled code step aside, saying so (TM904)."""
        if not self.compiled.any or not self.compiled.runs_compiled(model):
            return
        if driver.activations.relus:
            driver.step_aside("activations", "the model runs compiled (torch.compile): hooks on its ReLU layers "
                              "would make it recompile, so the sampled dead-ReLU check (TM311) is off",
                              compiled=self.compiled.describe())

    # -- the model's inputs ----------------------------------------------------------------------------
    def _watch_inputs(self, model: torch.nn.Module) -> None:
        """Keep a reference to the model's latest training input (no copy), for pre-flight and forensics.

        A global forward pre-hook that looks for the model, not a hook stored on the model: a module that
        carries a hook holding a local function cannot be pickled, and ``torch.save(model)`` or
        ``pickle.dumps(model)`` in the script would fail under ``run`` only. Once something is compiled, a
        global hook would be traced (and ``torch.compile(model)`` warns about one), so only the eager
        ``OptimizedModule`` wrapper gets a hook of its own; a module whose own call runs compiled gets none.
        """
        if not any(True for _ in model.parameters()):
            return
        outer = [m for m in self._seen.values() if unwrap(m) is model] or [model]
        free = [m for m in outer if not self.compiled.hooks_traced(m)]
        if not free:
            if self.drivers:
                self.drivers[0].step_aside(
                    "training-inputs", "the model's own call runs compiled (model.compile() or a compiled "
                    "function): a hook keeping its inputs would run inside the compiled graph, so pre-flight's "
                    "replay of a batch and the forensics of a non-finite step go without the batch",
                    compiled=self.compiled.describe())
            return
        target = free[0]
        self._input_module = target
        # the first step's input, seen by discovery before this hook existed: its checks and forensics see it too
        self._last_input = self._seen_args.get(id(target), self._last_input)

        def keep(module: torch.nn.Module, args: Any) -> None:
            if module is target and torch.is_grad_enabled() and not torch.compiler.is_compiling():
                self._last_input = args

        if self.compiled.any:
            self._input_handle = target.register_forward_pre_hook(keep)  # the eager OptimizedModule
        else:
            self._input_handle = register_module_forward_pre_hook(keep)

    # -- the end -------------------------------------------------------------------------------------------
    def _report_nothing_watched(self, exit_code: int = 0) -> None:
        """No step judged at all: say so (TM903), so that no findings never reads as a healthy run.

        A script that stopped on an error before its first step already has its own traceback; when a
        finding explains that error (rows named when the loss raised, a wiring error) TM903 would only add
        noise, and without one it says the script stopped rather than "trained nothing".
        """
        if any(d.step_count for d in self.drivers):
            return
        n_opt, n_back = self._step_calls, self._backwards
        if exit_code and not n_opt:
            if any(d.findings() for d in self.drivers) or self.internal or self.run.internal:
                return
            why = f"the script stopped (exit code {exit_code}) before its first optimizer step was watched"
        elif self.run.failed or (self._unwatched and not self.drivers):
            why = "trainmedic could not watch the optimizer steps (its engine failed, see TM902)"
        elif n_opt:
            why = (f"{n_opt} optimizer step(s) ran but no loss reached backward() where trainmedic sees it "
                   "(a training step inside a compiled function, or gradients set without backward())")
        elif n_back:
            why = (f"no optimizer step was seen, and after its {n_back} backward pass(es) the script updated no "
                   "parameter by hand (nothing trained, or gradients accumulated over several backward passes)")
        else:
            why = "no optimizer step was seen and no backward pass: the script trained nothing"
        if self.compiled.functions:
            why += (f"; it compiled {', '.join(self.compiled.functions)}: an optimizer step or backward pass "
                    "inside compiled code is not seen")
        self.internal.append(Finding(
            code=NOTHING_WATCHED.code, message=f"nothing was watched: {why}",
            evidence={"optimizer_steps": n_opt, "backward_passes": n_back, "engines": len(self.drivers),
                      "engines_failed": len(self._unwatched), "compiled": self.compiled.describe() or None},
        ))

"""The script's loss function, rebuilt from what ``trainmedic run`` saw, for the rate audit (TM343, issue 12)
and the probe replay (plain SGD, :mod:`trainmedic.heal.probe_replay`).

The rate audit replays recent batches on copies of the model (``loss_fn(model(inputs), target)``). A script
run under ``trainmedic run --heal`` hands trainmedic no loss function, but the session sees every call of a
``torch.nn.functional`` loss (the ``nn`` loss modules call them too) with its arguments, the model's output,
and the loss that reaches ``backward()``. This module rebuilds ``F.<loss>(output, target, *same arguments)``
only where that is the script's loss, exactly, on every one of the first ``REBUILD_STEPS`` watched steps:

* the step has one training loss call and one ``backward()``, on the very tensor that call returned (no
  ``loss / k``, no sum of losses, no penalty added, no gradient accumulation);
* the call's input is the very tensor the model returned (not a reshape of it, not a tuple's element), and
  the model's forward took no keyword arguments (the replay calls ``model(*inputs)``);
* the loss's autograd graph agrees (:func:`trainmedic.observe.graph.root_loss`): the loss node is that
  function's, with the mean reduction, no class or positive weights, and its input is the model's output
  (``from_output``); ``label_smoothing`` leaves no single loss node, so it is refused there;
* the extra arguments (``reduction``, ``ignore_index``...) are carried as they were, none is a tensor;
* all steps agree on the same rebuild;
* the script's step is the plain optimizer step the replays take: it clips no gradient (``clip_grad_norm_``,
  ``clip_grad_value_``), and, for the probe replay (plain SGD, absolute rates), steps no learning-rate
  scheduler (the rate audit judges a scheduler at each evaluation, :mod:`trainmedic.heal.audit_schedule`).
  The audit's range was measured on constant rates without clipping (``benchmarks/heal_tasks.py``). On the corpus's healthy ``gru_sequence`` (Adam,
  ``clip_grad_norm_`` at 0.5, StepLR; seed 0, ``benchmarks/run_audit_corpus.py``) the unclipped replays
  made the audit cut the rate at its first evaluation (lower rates 0.83x the rate's held loss) and the
  validation RMSE rose from 0.0289 to 0.0387; without the clipping it found nothing (with or without the
  StepLR). The audit's scheduler refusal (a precaution until then) was lifted with
  :mod:`trainmedic.heal.audit_schedule`.

Anything else (a hand-written loss, ``F.nll_loss(F.log_softmax(out))`` where the model returned ``out``, a
module with ``weight=``) is refused and neither the audit nor the probe replay runs: a replay of another
loss would judge the rate on the wrong objective. The forward hook that sees the model's output is removed once decided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainmedic.observe.graph import root_loss

REBUILD_STEPS = 3  # watched steps that must agree; the first step is never one (its forward came before the hook)


@dataclass(frozen=True)
class RebuiltLoss:
    """``fn(output, target, *args, **kwargs)``: the script's loss call with the model's output and a target."""

    name: str  # the torch.nn.functional name
    fn: Callable[..., Any] = field(compare=False, repr=False)  # the original (unwrapped) function
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, output: torch.Tensor, target: Any) -> torch.Tensor:
        return self.fn(output, target, *self.args, **dict(self.kwargs))

    def __str__(self) -> str:
        extra = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"F.{self.name}({', '.join(['output', 'target', *extra])})"


@dataclass
class _Call:
    name: str
    fn: Callable[..., Any]
    input: torch.Tensor
    out: torch.Tensor
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _plain(value: Any) -> bool:
    """A value carried into the rebuilt call as it was: no tensor (a class weight is refused upstream)."""
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


class LossRebuild:
    """Watches the first steps of one driver's model and binds the rebuilt loss or refuses (module docstring).

    ``start(module, driver, bind)``; the session then calls ``saw_output`` (a forward hook on ``module``),
    ``saw_call`` (a training loss call), ``saw_backward`` and ``saw_step`` (an optimizer step, before it is
    judged). ``bind(loss_fn)`` is called once, when all ``REBUILD_STEPS`` steps agree.
    """

    def __init__(self, steps: int = REBUILD_STEPS) -> None:
        self.steps = steps
        self.driver: Any = None
        self.module: torch.nn.Module | None = None
        self.loss_fn: RebuiltLoss | None = None  # bound
        self.refused: str | None = None  # why not
        self.votes: list[RebuiltLoss | str] = []
        self._bind: Callable[[RebuiltLoss], None] | None = None
        self._handle: Any = None
        # strong references (a temporary ``model(x)`` has no other Python reference by the time of
        # backward); dropped at each step, and for good once decided
        self._output: torch.Tensor | None = None
        self._forward_kwargs = False
        self._calls: list[_Call] = []
        self._judged: list[RebuiltLoss | str] = []

    @property
    def pending(self) -> bool:
        return self._bind is not None

    def start(self, module: torch.nn.Module, driver: Any, bind: Callable[[RebuiltLoss], None],
              hook: Callable[..., Any]) -> None:
        """Watch ``module``'s outputs (``hook``: the session's guarded global forward hook) for ``driver``."""
        from torch.nn.modules.module import register_module_forward_hook

        self.module, self.driver, self._bind = module, driver, bind
        self._handle = register_module_forward_hook(hook, with_kwargs=True)

    def stop(self, why: str | None = None) -> None:
        """Stop watching (decided, failed, or the session ends); ``why``: the refusal, if it is one."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if why is not None and self.loss_fn is None and self.refused is None:
            self.refused = why
        self._bind = None
        self._output = None
        self._calls.clear()
        self._judged.clear()

    # -- what the session saw -------------------------------------------------------------------------
    def saw_output(self, module: Any, kwargs: dict[str, Any], output: Any) -> None:
        """A training forward pass of the model (another module's is ignored)."""
        if module is not self.module:
            return
        self._output = output if isinstance(output, torch.Tensor) else None
        self._forward_kwargs = bool(kwargs)

    def saw_call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 out: torch.Tensor) -> None:
        """A functional loss call with gradient; ``fn`` is the unwrapped function."""
        inp = args[0] if args else kwargs.get("input")
        rest = {k: v for k, v in kwargs.items() if k not in ("input", "target")}
        if len(args) < 2 and "target" not in kwargs:
            return
        self._calls.append(_Call(name, fn, inp, out, tuple(args[2:]), rest))

    def saw_backward(self, loss: torch.Tensor) -> None:
        self._judged.append(self._judge(loss))

    def saw_step(self, driver: Any, differs: str | None = None) -> None:
        """An optimizer step is about to be judged: the calls and backward passes since the last one were its.
        ``differs``: why the replay's plain step would not be the script's (it clips, it schedules the rate)."""
        judged, self._judged = self._judged, []
        self._calls.clear()
        self._output = None
        if driver is not self.driver:
            return  # another optimizer's step (a GAN's other half)
        if differs is not None:
            self.votes.append(differs)
        elif len(judged) != 1:
            self.votes.append(f"{len(judged)} backward passes in a step")
        else:
            self.votes.append(judged[0])
        if len(self.votes) < self.steps:
            return
        first = self.votes[0]
        why = next((v for v in self.votes if isinstance(v, str)), None)
        if why is None and any(v != first for v in self.votes):
            why = "the loss call changed between steps"
        if why is None and isinstance(first, RebuiltLoss) and self._bind is not None:
            self.loss_fn = first
            self._bind(first)
        self.stop(why)

    # -- the judgement --------------------------------------------------------------------------------
    def _judge(self, loss: torch.Tensor) -> RebuiltLoss | str:
        """The rebuilt loss, if ``loss`` is exactly one functional call on the model's output; else why not."""
        if len(self._calls) != 1:
            return f"{len(self._calls)} functional loss calls before backward()"
        call = self._calls[0]
        output = self._output
        if call.out is not loss:
            return f"the loss reaching backward() is not what F.{call.name} returned"
        if output is None or call.input is not output:
            return f"the input of F.{call.name} is not the model's output tensor"
        if self._forward_kwargs:
            return "the model was called with keyword arguments"
        if not all(_plain(v) for v in (*call.args, *call.kwargs.values())):
            return f"F.{call.name} was called with a tensor argument (a class weight)"
        root = root_loss(loss.grad_fn, output.grad_fn) if loss.grad_fn is not None else None
        if root is None or not root.from_output or root.factor != 1.0:
            return f"the graph does not show F.{call.name}'s mean on the model's output alone"
        if root.name != call.name and (root.name, call.name) != ("cross_entropy", "nll_loss"):
            return f"the graph shows {root.name}, the call was F.{call.name}"  # nll_loss on log-probabilities
        return RebuiltLoss(call.name, call.fn, call.args, tuple(sorted(call.kwargs.items())))

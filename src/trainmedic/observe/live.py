"""Wiring and data checks on the live training steps, for every front end.

Pre-flight (:mod:`trainmedic.preflight`) replays ``loss_fn(model(x), y)`` when it has both. Most front ends
do not: ``trainmedic run`` and the framework callbacks see an ordinary script's steps, and a plain
``medic.step(loss)`` has only the loss. :class:`LiveChecks` reads what each step shows instead:

* the loss's autograd graph (:mod:`~trainmedic.observe.graph`): the loss functions and what fed them, and
  broadcasts of the prediction (TM201, TM202, TM203, TM211);
* the loss calls a front end saw (``trainmedic run`` wraps the functional losses; an ``nn`` loss module is
  seen through a forward hook), with their input and target;
* the model's input and the target (the batch, when the front end has it): non-finite rows, sentinels,
  scales, count or skewed targets under a regression loss (TM101, TM102, TM108, TM109, TM111, TM112);
* the optimizer's parameters: an unfreeze that never took effect (TM204);
* the targets of every step until judged: batches served in label order (TM116, :mod:`~trainmedic.observe.ordering`).

Cost: the wiring checks run on the first ``FIRST_STEPS`` steps; the data checks on those and then every
``EVERY`` steps, and on a step whose loss turned non-finite. Nothing runs in between.

A front end that sees the step's tensors hands them over as :class:`Observed`; otherwise (``Medic``) the
checks arm a forward pre-hook on the model and a module forward hook for ``nn`` loss modules for the
observed steps only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from trainmedic.observe.data import (
    MAX_ROWS,
    REGRESSION_LOSSES,
    DataSample,
    Issue,
    nonfinite_rows,
    sentinels,
    target_under_regression,
    unscaled,
)
from trainmedic.observe.graph import LossCall, LossGraph, read_loss_graph
from trainmedic.observe.levels import input_rms, observed_pair, target_sample
from trainmedic.observe.ordering import BatchOrder
from trainmedic.quiet import silenced
from trainmedic.replay import OwnHook

FIRST_STEPS = 3
EVERY = 200
LEVEL_EVERY = 50
NN_LOSSES = {"MSELoss": "mse_loss", "L1Loss": "l1_loss", "SmoothL1Loss": "smooth_l1_loss", "HuberLoss": "huber_loss",
             "CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss", "BCELoss": "binary_cross_entropy",
             "BCEWithLogitsLoss": "binary_cross_entropy_with_logits", "PoissonNLLLoss": "poisson_nll_loss",
             "KLDivLoss": "kl_div", "GaussianNLLLoss": "gaussian_nll_loss"}


@dataclass
class Observed:
    """What a front end saw of one training step, before its backward."""

    graph: LossGraph | None = None
    calls: list[LossCall] = field(default_factory=list)
    inputs: Any = None  # the model's input (a tensor, or the args it was called with)
    target: Any = None
    output: Any = None  # the model's output: the graph walk stops there


def first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def due(step: int) -> bool:
    return step < FIRST_STEPS or step % EVERY == 0


def observing(step: int) -> bool:
    """The front ends read the loss graph of this step: for the checks (``due``), or for the constant-level
    sample alone (every ``LEVEL_EVERY`` steps: TM317 asks whether the predictions still depend on the input)."""
    return due(step) or step % LEVEL_EVERY == 0


def _remove_all(handles: list[Any]) -> None:
    for h in handles:
        h.remove()
    handles.clear()


class _WeakModuleHook:
    """A global module forward hook that reaches its :class:`LiveChecks` through a weak reference."""

    __slots__ = ("ref",)

    def __init__(self, live: LiveChecks) -> None:
        self.ref = weakref.ref(live)

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        live = self.ref()
        if live is not None:
            live.saw_module(module, args, output)


class LiveChecks:
    """See the module docstring. ``report(code, message, step=, evidence=, key=)`` records a finding."""

    def __init__(self, model: torch.nn.Module | None, optimizer: torch.optim.Optimizer | None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.sample = DataSample()
        self.judged_data = False
        self.order = BatchOrder()  # TM116: the targets of the first steps, every step
        self._armed: Observed | None = None
        self._handles: list[Any] = []  # the armed hooks' handles (the list is kept: the finalizer holds it)
        self._finalizer: weakref.finalize | None = None
        self._input_handle: Any = None
        self.last_inputs: Any = None  # the latest training forward's args (keep_inputs), for a non-finite step
        self.calls: list[LossCall] = []  # the loss calls of the latest checked step (for an early judgement)
        self.level_samples: list[dict[str, Any]] = []  # target statistics for the engine's level (take_levels)

    # -- self-observation (front ends that hand nothing over) -------------------------------------------
    def arm(self) -> None:
        """Watch the next training forward pass: the model's input and ``nn`` loss module calls."""
        if self._handles:
            return
        self._armed = Observed()
        self._handles.append(self.model.register_forward_pre_hook(OwnHook(self._saw_input)))
        self._handles.append(self.model.register_forward_hook(OwnHook(self._saw_output)))
        from torch.nn.modules.module import register_module_forward_hook

        # The module hook is global: every module of the process runs it (and takes nn.Module's slower call
        # path while any exists). It holds this object weakly, and is removed when this object is collected,
        # so checks armed by a Medic nobody closes do not outlive it.
        self._handles.append(register_module_forward_hook(_WeakModuleHook(self)))
        if self._finalizer is None:  # one per object: it removes whatever is armed when the object goes
            self._finalizer = weakref.finalize(self, _remove_all, self._handles)

    def keep_inputs(self) -> None:
        """Keep a reference to the args of every training forward pass of the model (no copy, no sync), so
        that a step whose loss turns non-finite can name the input rows behind it (TM101) although the front
        end hands over no batch and the step was not an observed one. Costs one Python call per forward and
        keeps the latest batch alive until the next forward."""
        if self._input_handle is None and self.model is not None:
            self._input_handle = self.model.register_forward_pre_hook(OwnHook(self._keep_input))

    def _keep_input(self, module: torch.nn.Module, args: Any) -> None:
        if not torch.compiler.is_compiling() and torch.is_grad_enabled():
            self.last_inputs = args

    def disarm(self) -> Observed | None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        armed, self._armed = self._armed, None
        return armed

    def _saw_input(self, module: torch.nn.Module, args: Any) -> None:
        if torch.compiler.is_compiling():
            return
        if self._armed is not None and torch.is_grad_enabled() and self._armed.inputs is None:
            self._armed.inputs = args

    def _saw_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if torch.compiler.is_compiling():
            return
        if self._armed is not None and torch.is_grad_enabled() and self._armed.output is None:
            self._armed.output = output

    def saw_module(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        name = NN_LOSSES.get(type(module).__name__)
        if name is None or torch.compiler.is_compiling() or self._armed is None or not torch.is_grad_enabled() or len(args) < 2:
            return
        if type(module).__module__ != "torch.nn.modules.loss":
            return
        inp, tgt = args[0], args[1]
        if isinstance(inp, torch.Tensor) and isinstance(tgt, torch.Tensor):
            self._armed.calls.append(LossCall(name, inp, tgt, tuple(inp.shape), tuple(tgt.shape),
                                              kwargs=_module_kwargs(module), source="module"))
            self._armed.target = tgt

    # -- the checks -------------------------------------------------------------------------------------
    def check(self, step: int, loss: torch.Tensor, batch: Any, observed: Observed | None, report: Any,
              wiring: bool = True) -> None:
        """Run the checks due at ``step`` on what was observed (or on the loss and batch alone)."""
        with silenced():  # nothing of trainmedic's reaches the script's stderr
            self._check(step, loss, batch, observed, report, wiring)

    def _seen(self, loss: torch.Tensor, batch: Any, observed: Observed | None
              ) -> tuple[Observed, list[LossCall], Any, Any]:
        """What the step showed: (observed, loss calls, the model's input, the target)."""
        seen = observed if observed is not None else self.disarm()
        seen = seen or Observed()
        if seen.graph is None and isinstance(loss, torch.Tensor):
            out = first_tensor(seen.output)
            seen.graph = read_loss_graph(loss, out.grad_fn if out is not None else None)
        inputs, target = _from_batch(batch)
        inputs = inputs if inputs is not None else first_tensor(seen.inputs)
        calls = _merge_calls(seen)
        target = target if target is not None else seen.target
        if target is None:
            target = next((c.target for c in calls if c.target is not None), None)
        return seen, calls, inputs, target

    def sample_level(self, step: int, loss: torch.Tensor, batch: Any, observed: Observed | None) -> None:
        """Only the constant-level sample (observe/levels.py), on a step the other checks skip."""
        with silenced():
            seen, calls, inputs, target = self._seen(loss, batch, observed)
            self._level(step, seen, calls, inputs, target)

    def _level(self, step: int, seen: Observed, calls: list[LossCall], inputs: Any, target: Any) -> None:
        root = seen.graph.root if seen.graph is not None else None
        if root is not None:
            sample = target_sample(root, *observed_pair(root, calls, target, first_tensor(seen.output)))
            if sample is not None:
                self.level_samples.append({**sample, "step": step, "input_rms": input_rms(inputs)})

    def _check(self, step: int, loss: torch.Tensor, batch: Any, observed: Observed | None, report: Any,
               wiring: bool) -> None:
        seen, calls, inputs, target = self._seen(loss, batch, observed)
        self.calls = calls
        self._level(step, seen, calls, inputs, target)
        issues = []
        if wiring and step < FIRST_STEPS:
            issues += wiring_issues(calls, seen.graph)
        issues += self.frozen_issues()
        issues += self.data_issues(inputs, target, calls, step)
        for iss in issues:
            report(iss.code, iss.message, step=step, evidence=iss.evidence, key=iss.key)

    def epoch_end(self, step: int, report: Any) -> None:
        """An epoch ended: the usual place for an unfreeze, so the unfreeze typo (TM204) is judged here too;
        the checks on the steps alone (``due``) would not see one made after the first steps until step 200."""
        for iss in self.frozen_issues():
            report(iss.code, iss.message, step=step, evidence=iss.evidence, key=iss.key)

    def take_levels(self) -> list[dict[str, Any]]:
        """The target statistics gathered since the last call (plain data, for the engine)."""
        out, self.level_samples = self.level_samples, []
        return out

    def frozen_issues(self) -> list[Any]:
        """TM204: ``p.requires_grad_ = True`` assigns an attribute instead of calling the method: the
        parameter stays frozen although the script meant to unfreeze it."""
        typo = [p for g in self.optimizer.param_groups for p in g["params"]
                if isinstance(getattr(p, "requires_grad_", None), bool) and not p.requires_grad]
        if not typo:
            return []
        names = {id(p): n for n, p in self.model.named_parameters()}
        shown = [names.get(id(p), f"tensor of shape {tuple(p.shape)}") for p in typo[:5]]
        return [Issue("TM204", f"{len(typo)} parameter(s) in the optimizer had `requires_grad_ = True` assigned (an "
                      "attribute, not the method): they stay frozen and never train: " + ", ".join(shown) +
                      "; write `p.requires_grad = True` or `p.requires_grad_(True)`",
                      {"frozen_by_typo": shown, "count": len(typo)}, "TM204:requires_grad_")]

    def data_issues(self, inputs: Any, target: Any, calls: list[LossCall], step: int) -> list[Any]:
        out = []
        loss = next((c.name for c in calls), None)
        out += [Issue(code, msg, ev, code) for code, msg, ev in _nonfinite(step, inputs, target, loss)]
        if step < FIRST_STEPS:
            self.sample.add(inputs, target)
        if step >= FIRST_STEPS - 1 and not self.judged_data:
            self.judged_data = True
            out += self._judge_sample(calls)
        return out

    def _judge_sample(self, calls: list[LossCall], crashed: bool = False) -> list[Any]:
        out = []
        x, y = self.sample.distinct()
        if x is not None:
            out += sentinels(x, "input column", once=crashed)
            iss = unscaled(x)
            if iss:
                out.append(iss)
        if y is not None:
            out += sentinels(y, "target", once=crashed)
            loss = next((c.name for c in calls if c.name in REGRESSION_LOSSES), None)
            iss = target_under_regression(y, loss) if loss else None
            if iss:
                out.append(iss)
        return out

    def nonfinite(self, step: int, batch: Any, observed: Observed | None, report: Any) -> None:
        """The loss or gradients turned non-finite: name the batch rows that hold NaN/Inf, if any."""
        inputs, target = _from_batch(batch)
        if observed is not None:
            inputs = inputs if inputs is not None else first_tensor(observed.inputs)
            target = target if target is not None else observed.target
        if inputs is None:
            inputs = first_tensor(self.last_inputs)
        for code, message, evidence in _nonfinite(step, inputs, target, None):
            report(code, message + ", when the loss turned non-finite", step=step, evidence=evidence, key=code)
        if not self.judged_data and (self.sample.rows or self.sample.target_rows):
            # non-finite before the first steps' sample was judged: judge the batches seen so far now, so that
            # a sentinel, unscaled features or a raw skewed target is named before the NaN it caused
            self.judged_data = True
            for iss in self._judge_sample(self.calls, crashed=True):
                report(iss.code, iss.message + " (judged when the loss turned non-finite)", step=step,
                       evidence=iss.evidence, key=iss.key)

    def loss_raised(self, step: int, batch: Any, report: Any, when: str = "the loss function raised") -> None:
        """The loss function raised on this step's batch (a NaN row turned ``binary_cross_entropy``'s input
        out of range, a -9999 sentinel its target): no step follows, so the rows that explain it are named
        now: non-finite rows (TM101/TM102) and, if the first steps' sample was not judged yet, sentinels and
        scales (TM109, TM108) with this batch included."""
        inputs, target = _from_batch(batch)
        for code, message, evidence in _nonfinite(step, inputs, target, None):
            report(code, message + f", when {when}", step=step, evidence=evidence, key=code)
        if not self.judged_data:
            self.judged_data = True
            self.sample.add(inputs, target)
            issues = self._judge_sample([], crashed=True)
            if isinstance(target, torch.Tensor) and target.dim() == 2 and target.shape[1] > 1 \
                    and target.is_floating_point():  # a reconstruction target: columns like the input's
                issues += sentinels(target.detach().float().cpu().numpy()[:MAX_ROWS], "target column", once=True)
            for iss in issues:
                report(iss.code, iss.message + f" (judged when {when})", step=step,
                       evidence=iss.evidence, key=iss.key)

    def see_order(self, step: int, batch: Any, observed: Observed | None, report: Any) -> None:
        """Every step until judged (TM116): the step's target, from the batch or the loss calls seen."""
        if self.order.done:
            return
        _, target = _from_batch(batch)
        if target is None and observed is not None:
            target = observed.target if observed.target is not None else \
                next((c.target for c in observed.calls if c.target is not None), None)
        if target is not None:
            self.order.see(step, target, report)

    def close(self) -> None:
        self.disarm()
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None
        self.last_inputs = None


def wiring_issues(calls: list[LossCall], graph: LossGraph | None) -> list[Any]:
    """TM201-TM203 and TM211 from the loss calls and the graph, judged by pre-flight's own checks."""
    from trainmedic.preflight import PreflightThresholds, PreflightWatcher, judge_loss_call

    w = PreflightWatcher(PreflightThresholds())
    judged = set()
    for c in calls:
        if c.input is not None and c.target is not None:
            judge_loss_call(w, c.name, c.input, c.target, c.kwargs, c.origin, c.where)
            if c.source != "graph":  # seen at the call: its own shapes and line; the graph adds nothing
                judged.add(c.name)
    issues = [i for i in w.finalize()]
    for c in calls:  # read after backward (medic.step(loss)): only the op that fed the loss is left
        if c.name == "kl_div" and c.input is None and c.origin in ("softmax", "sigmoid") \
                and not any(i.code == "TM202" for i in issues):
            issues.append(Issue("TM202", f"`F.kl_div` (KLDivLoss) expects log-probabilities as its input but got the "
                                f"output of a {c.origin}: pass `F.log_softmax(logits, dim=1)` (the target stays "
                                "probabilities unless log_target=True)", {"op": "kl_div", "origin": c.origin,
                                                                          "source": "autograd graph"},
                                "TM202:kl_div"))
    for b in graph.broadcasts if graph is not None else ():
        if b.loss is not None and b.loss in judged:
            continue  # the call itself was judged, with the target's shape and the line
        then = f", then {b.then}()" if b.then else ""
        what = f"`{b.loss}`" if b.loss else f"`{b.op}`"
        issues.append(Issue("TM201", f"{what} broadcast the prediction of shape {b.prediction_shape} to "
                             f"{b.result_shape}{then}: every prediction is compared with every target. The target "
                             "has a different shape (e.g. (B,) against (B,1)); make them equal with "
                             "`pred.squeeze(-1)` or `y.view(-1, 1)`",
                             {"op": b.op, "prediction_shape": b.prediction_shape, "result_shape": b.result_shape,
                              "then": b.then, "source": "autograd graph"}, f"TM201:{b.loss or b.op}"))
    return issues


def _nonfinite(step: int, inputs: Any, target: Any, loss: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for rows, tensor, code, what in zip(nonfinite_rows(inputs, target), (inputs, target), ("TM101", "TM102"),
                                        ("the model's input", "the target")):
        if rows:
            out.append((code, f"{what} holds NaN/Inf in {len(rows)} of {int(tensor.shape[0])} rows at step {step} "
                        f"(batch positions {rows[:10]})" + (f", fed to `{loss}`" if loss else ""),
                        {"tensor": what, "rows": rows[:50], "count": len(rows), "batch_size": int(tensor.shape[0]),
                         "loss": loss}))
    return out


def _merge_calls(seen: Observed) -> list[LossCall]:
    """The calls seen at the function or module, plus the graph's loss nodes not seen otherwise."""
    calls = list(seen.calls)
    graph_calls = seen.graph.calls if seen.graph is not None else []
    for c in calls:  # the graph knows what produced the input
        if c.origin is None:
            match = next((g for g in graph_calls if g.name == c.name and g.origin), None)
            if match is not None:
                c.origin = match.origin
    names = {c.name for c in calls}
    return calls + [g for g in graph_calls if g.name not in names]


def _from_batch(batch: Any) -> tuple[Any, Any]:
    if batch is None:
        return None, None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return first_tensor(batch[0]), batch[1] if isinstance(batch[1], torch.Tensor) else None
    return first_tensor(batch), None


def _module_kwargs(module: torch.nn.Module) -> dict[str, Any]:
    ignore = getattr(module, "ignore_index", None)
    return {"ignore_index": ignore} if isinstance(ignore, int) else {}

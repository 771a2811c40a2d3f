"""Loops that update their parameters by hand, without an optimizer object, watched by ``trainmedic run``.

PyTorch's own word-language-model example trains like this::

    model.zero_grad()
    loss = criterion(model(data), targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)

No ``optimizer.step()`` ever runs, so the optimizer hooks see nothing. What ``run`` does see is each
``backward()`` (its wrapper): the loss, and through the autograd graph (``Node.next_functions``, the
``AccumulateGrad`` nodes' ``variable``) the leaf tensors that receive gradients. :class:`ManualUpdates`
stands for the missing optimizer (its ``param_groups`` hold those tensors), so an ordinary
:class:`~trainmedic.driver.Driver` watches the loop with the step protocol, one step per backward pass:

* at the end of ``backward()`` (gradients ready, the update not yet made): ``before_step(loss)``;
* when the next ``backward()`` starts, or the script ends (the update has been made): ``after_step()``,
  which also measures the sampled update size (TM312) from the weights before and after.

Whether a loop updates its parameters by hand is only known after the fact, so the first backward pass
whose leaves no optimizer holds starts a trial: a driver that prints nothing yet, and the leaves' values
(a float64 norm and sum per tensor: ``.data`` updates bypass the tensors' version counters). When the next
backward starts, the trial is confirmed if the values changed with no optimizer step in between: the first
step is then judged like every other, and its findings are printed. Otherwise (gradients computed for
another purpose, an optimizer created late) the trial driver is removed with everything it recorded.

Watch mode only: the update is the script's own code, not a call trainmedic can skip, clip or undo; with
``--heal`` an info finding (TM904) says so.
"""

from __future__ import annotations

from collections.abc import Callable, MutableSet
from typing import Any

import torch

from trainmedic.driver import Driver
from trainmedic.instrument.discovery import model_for
from trainmedic.instrument.hooked import HookedRun
from trainmedic.report.live import ConsoleSink

MAX_TRIALS = 3  # backward passes without an update that may start a trial before the watch gives up


class ManualUpdates(torch.optim.Optimizer):
    """Stands for the optimizer of a loop that updates its parameters by hand.

    Only ``param_groups`` matter: the tensors the loop updates, so that a :class:`Driver` collects their
    gradients, samples their updates and snapshots them. It has no learning rate (the loop's rule is its
    own; reports show none) and no ``step()``: trainmedic never takes a step for the loop.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__(params, {})

    def step(self, closure: Any = None) -> Any:  # noqa: ARG002
        raise RuntimeError("ManualUpdates stands for a hand-written update; the loop updates its parameters itself")


def graph_leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors a backward pass from ``loss`` accumulates gradients into, outputs first."""
    leaves: list[torch.Tensor] = []
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)  # AccumulateGrad: the leaf it accumulates into
        if isinstance(var, torch.Tensor):
            leaves.append(var)
            continue
        stack.extend(n for n, _ in node.next_functions)
    return leaves


def _fingerprint(params: list[torch.Tensor]) -> torch.Tensor:
    """Two float64 numbers per tensor: any update of its values changes them."""
    with torch.no_grad():
        return torch.stack([torch.stack([p.double().norm(), p.double().sum()]) for p in params]).cpu()


class ManualLoop:
    """Watches a loop without an optimizer object; see the module docstring.

    Args:
        run: the session's :class:`HookedRun` (the trial driver is added to it, and removed if not confirmed).
        close_step: called before each judged step (the session's epoch tracker: a step ends an evaluation).
        seen: the modules of training forward passes (model discovery), read when a trial starts.
        batch: returns the latest training batch, for pre-flight and forensics.
        optimizers: every optimizer the script created (a loop whose leaves one of them holds is not manual).
        optimizer_steps: how many optimizer steps the script has taken so far.
        on_confirmed: called with the driver and model once the loop is known to update by hand.
        heal: ``--heal`` was asked (said to be impossible here, TM904).
        console: print findings live.
    """

    def __init__(self, run: HookedRun, close_step: Callable[[], None], seen: dict[int, torch.nn.Module],
                 batch: Callable[[], Any], optimizers: MutableSet[torch.optim.Optimizer],
                 optimizer_steps: Callable[[], int], on_confirmed: Callable[[Driver, torch.nn.Module], None],
                 heal: bool = False, console: bool = True) -> None:
        self.run = run
        self.close_step = close_step
        self.seen = seen
        self.batch = batch
        self.optimizers = optimizers
        self.optimizer_steps = optimizer_steps
        self.on_confirmed = on_confirmed
        self.heal = heal
        self.console = console
        self.off = False
        self.trials = 0
        self.confirmed = False
        self.updater: ManualUpdates | None = None
        self.driver: Driver | None = None
        self.model: torch.nn.Module | None = None
        self._pending = False
        self._before: torch.Tensor | None = None
        self._steps_at = 0

    def before_backward(self) -> None:
        """A backward pass is about to run: the previous one's update, if any, has been made."""
        if self._pending:
            self._end_step()

    def after_backward(self, loss: Any) -> None:
        """A backward pass from ``loss`` finished: its gradients are ready, the loop's update comes next."""
        if self.off or not isinstance(loss, torch.Tensor) or loss.numel() != 1 or loss.grad_fn is None:
            return
        if self.updater is None and not self._start_trial(loss):
            return
        assert self.updater is not None
        self.close_step()
        self.run.before_step(self.updater, loss, self.batch())
        self._pending = True
        if not self.confirmed:
            self._before = _fingerprint(self._params())
            self._steps_at = self.optimizer_steps()

    def finish(self) -> None:
        """The script ended: its last update has been made."""
        if self._pending:
            self._end_step()

    # ------------------------------------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        assert self.updater is not None
        return [p for g in self.updater.param_groups for p in g["params"]]

    def _start_trial(self, loss: torch.Tensor) -> bool:
        if self.trials >= MAX_TRIALS:
            self.off = True
            return False
        leaves = [t for t in graph_leaves(loss) if t.requires_grad]
        if not leaves:
            return False
        held = {id(p) for opt in list(self.optimizers) for g in opt.param_groups for p in g["params"]}
        if any(id(t) in held for t in leaves):
            self.off = True  # an optimizer trains them: its hooks watch the loop
            return False
        self.trials += 1
        model = model_for(ManualUpdates(leaves), list(self.seen.values()))
        ids = {id(t) for t in leaves}
        in_model = [p for p in model.parameters() if p.requires_grad]
        ids_model = {id(p) for p in in_model}
        # The loop updates what `for p in model.parameters()` gives; leaves outside the model come after.
        params = in_model + [t for t in leaves if id(t) not in ids_model] if ids & ids_model else leaves
        self.updater = ManualUpdates(params)
        self.model = model
        self.driver = self.run.add(model, self.updater, console=False, mode="watch")
        return True

    def _end_step(self) -> None:
        self._pending = False
        if not self.confirmed and not self._confirm():
            return
        self.run.after_step(self.updater)

    def _confirm(self) -> bool:
        """Was the trial step followed by an update made by hand? Keep the driver if so, drop it if not."""
        before, self._before = self._before, None
        stepped = self.optimizer_steps() != self._steps_at
        changed = before is not None and not torch.equal(before, _fingerprint(self._params()))
        driver = self.driver
        if stepped or not changed or driver is None:
            self.run.remove(self.updater)
            self.updater = self.driver = self.model = None
            self.off = self.off or stepped
            return False
        self.confirmed = True
        if self.console:
            driver.console.enabled = True
            sink = ConsoleSink(driver.console)
            for event in list(driver.events):
                if event.get("type") == "finding":
                    sink(event, True)
        if self.heal:
            driver.step_aside("heal", "this loop updates its parameters by hand (no optimizer object): "
                              "trainmedic watches it but cannot skip, clip or roll back a step it does not take",
                              step=0)
        assert self.model is not None
        self.on_confirmed(driver, self.model)
        return True

    @property
    def on_trial(self) -> Driver | None:
        """The driver of a loop not yet known to update by hand (it may still be removed)."""
        return None if self.confirmed else self.driver

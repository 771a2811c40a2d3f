"""trainmedic for the Hugging Face ``Trainer``: ``Trainer(..., callbacks=[MedicCallback(mode="heal")])``.

    from trainmedic.integrations.transformers import MedicCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=val,
                      callbacks=[MedicCallback(mode="heal")])

Each optimizer step is checked in ``on_pre_optimizer_step`` (after backward, after the Trainer's own
gradient clipping, before the step) with the same engine as ``Medic``; the loss is the model output's
``loss`` of the step's last forward pass. ``eval_loss`` from each evaluation feeds the plateau (TM308) and
overfitting (TM309) checks. In heal mode it skips a non-finite step, clips a gradient spike, rolls back
with a smaller learning rate, and stops training early (``control.should_training_stop``) restoring the
best weights. Findings go to ``out`` (default ``<output_dir>/trainmedic``) from the main process.
Note: with ``max_grad_norm`` set (the Trainer's default is 1.0) the gradient norms seen are the clipped
ones, so TM303 only sees spikes that survive the Trainer's clipping; non-finite values are always seen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        "trainmedic.integrations.transformers needs transformers: pip install 'trainmedic[transformers]'"
    ) from exc

from trainmedic.config import Thresholds
from trainmedic.instrument.hooked import HookedRun
from trainmedic.observe.graph import read_loss_graph
from trainmedic.observe.live import Observed, first_tensor


def _unwrap_optimizer(opt: Any) -> Any:
    for _ in range(4):  # accelerate's AcceleratedOptimizer (itself an Optimizer subclass) wraps the real one
        inner = getattr(opt, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        opt = inner
    return opt


def _unwrap_scheduler(sched: Any) -> Any:
    for _ in range(4):  # accelerate's AcceleratedScheduler wraps the real one
        inner = getattr(sched, "scheduler", None)
        if inner is None or not hasattr(inner, "state_dict"):
            break
        sched = inner
    return sched


class MedicCallback(TrainerCallback):
    """Watch (``mode="watch"``) or repair (``mode="heal"``) a ``transformers.Trainer`` run."""

    def __init__(self, mode: str = "watch", *, out: str | os.PathLike[str] | None = None,
                 thresholds: Thresholds | dict[str, Any] | None = None, console: bool = True) -> None:
        self.run = HookedRun(mode, thresholds, console, name="transformers MedicCallback")
        self.out = out
        self.report_dir: Path | None = None
        self._loss: Any = None
        self._handle: Any = None
        self._evaluates = False
        self._post: Any = None
        self._observed: Observed | None = None

    @property
    def findings(self) -> list[Any]:
        return self.run.findings

    @property
    def medic(self):
        """The driver of the Trainer's optimizer (:class:`~trainmedic.driver.Driver`)."""
        return self.run.primary

    def _capture(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if loss is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            loss = output[0] if output[0].numel() == 1 else None
        if isinstance(loss, torch.Tensor):
            self._loss = loss
            if self.run.observing_next and not self.run.failed and loss.grad_fn is not None:
                try:  # before backward: the loss nodes still hold their inputs and targets
                    inputs = kwargs.get("input_ids", kwargs.get("x")) if kwargs else None
                    self._observed = Observed(graph=read_loss_graph(loss),
                                              inputs=inputs if inputs is not None else first_tensor(args or kwargs),
                                              target=(kwargs or {}).get("labels"))
                except Exception as exc:
                    self.run.fail("reading the loss graph", exc)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        try:
            opt = _unwrap_optimizer(optimizer)
            # The Trainer always steps a scheduler (linear decay by default), which sets each step's rate
            # from its base rates: heal must scale those (and snapshot the scheduler), or every rate it
            # chooses is overwritten one step later.
            self.run.add(model, opt, scheduler=_unwrap_scheduler(kwargs.get("lr_scheduler")))
            self._post = opt.register_step_post_hook(lambda o, args, kwargs: self.run.after_step(o))
            self._handle = model.register_forward_hook(self._capture, with_kwargs=True)
            strategy = getattr(args, "eval_strategy", None) or getattr(args, "evaluation_strategy", "no")
            self._evaluates = str(getattr(strategy, "value", strategy)) != "no"
        except Exception as exc:
            self.run.fail("on_train_begin", exc)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                              **kwargs: Any) -> None:
        if optimizer is not None:
            observed, self._observed = self._observed, None
            self.run.before_step(_unwrap_optimizer(optimizer), self._loss, None, observed)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run.should_stop:
            control.should_training_stop = True

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        self.run.end_epoch(val_loss=(metrics or {}).get("eval_loss"))
        if self.run.should_stop:
            control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._evaluates:
            self.run.end_epoch()
            if self.run.should_stop:
                control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            for h in (self._handle, self._post):
                if h is not None:
                    h.remove()
            self._handle = self._post = None
            self.run.finish()
            if state.is_world_process_zero and self.run.primary is not None:
                out = self.out or Path(args.output_dir or os.getcwd()) / "trainmedic"
                self.report_dir = self.run.save(out, meta={"entry": "transformers"})
        finally:
            self.run.close()


__all__ = ["MedicCallback"]

"""trainmedic for PyTorch Lightning: ``Trainer(callbacks=[MedicCallback(mode="heal")])``.

    from trainmedic.integrations.lightning import MedicCallback
    trainer = Trainer(max_epochs=20, callbacks=[MedicCallback(mode="heal", out="runs/exp1")])

It watches every optimizer step (``on_before_optimizer_step``, after backward and before the step) with the
same engine as ``Medic``: non-finite losses and gradients, spikes, divergence, stalls, plateaus and
overfitting (from the logged ``monitor`` metric, default ``val_loss``). In heal mode it skips a
non-finite step, clips a gradient spike, rolls back to the last healthy weights with a smaller learning
rate, lowers the learning rate on a plateau, and stops early (``trainer.should_stop``) restoring the best
weights. Findings go to ``out`` (default ``<trainer.log_dir or cwd>/trainmedic``) on global rank 0.

``loss_fn=`` (heal mode) turns on the replays on copies, ``loss_fn(pl_module(x), y)`` on each ``(x, y)``
batch: for an Adam, AdamW or RMSprop optimizer the rate audit (TM343, :mod:`trainmedic.heal.rate_audit`:
at the first evaluation, recent batches at the rate and at 1/3 and 1/10 of it), for plain SGD the probe
replay (:mod:`trainmedic.heal.probe_replay`: after a rollback's probe, its batches at the rates its curve
supports, and heal continues at the best). Both run only where those replays train as the Trainer does:
one optimizer, automatic optimization, no gradient clipping, no gradient accumulation, and a ``forward``
that returns what ``loss_fn`` takes; otherwise a TM904 (``rate-audit`` or ``probe-replay``) says why it
stepped aside. Under a learning-rate scheduler the probe replay steps aside; the audit runs where the
scheduler's rate holds over its replays and cuts by scaling the scheduler's base rates
(:mod:`trainmedic.heal.audit_schedule`).
Works with either the ``lightning`` or the ``pytorch_lightning`` package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on the installed flavour
    try:
        import pytorch_lightning as pl
    except ImportError as exc:
        raise ImportError(
            "trainmedic.integrations.lightning needs PyTorch Lightning: pip install 'trainmedic[lightning]'"
        ) from exc

from trainmedic.config import Thresholds
from trainmedic.heal.probe_replay import add_probe_replay
from trainmedic.heal.rate_audit import add_rate_audit
from trainmedic.instrument.hooked import HookedRun
from trainmedic.observe.graph import read_loss_graph
from trainmedic.observe.live import Observed


class MedicCallback(pl.Callback):
    """Watch (``mode="watch"``) or repair (``mode="heal"``) a Lightning run."""

    def __init__(self, mode: str = "watch", *, monitor: str = "val_loss", higher_is_better: bool = False,
                 out: str | os.PathLike[str] | None = None,
                 thresholds: Thresholds | dict[str, Any] | None = None, console: bool = True,
                 loss_fn: Any = None) -> None:
        super().__init__()
        self.run = HookedRun(mode, thresholds, console, name="lightning MedicCallback")
        self.monitor = monitor
        self.higher_is_better = higher_is_better
        self.out = out
        self.loss_fn = loss_fn  # the rate audit's and probe replay's loss: loss_fn(pl_module(x), y)
        self.report_dir: Path | None = None
        self._loss: Any = None
        self._batch: Any = None
        self._handles: list[Any] = []
        self._observed: Observed | None = None

    @property
    def findings(self) -> list[Any]:
        return self.run.findings

    @property
    def medic(self):
        """The driver of the first optimizer (:class:`~trainmedic.driver.Driver`)."""
        return self.run.primary

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        try:
            scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
            # A scheduler sets the rate from its base rates at each of its steps: heal scales those (and
            # snapshots the scheduler), or every rate it chooses is overwritten at the scheduler's next step.
            schedulers = {id(getattr(c.scheduler, "optimizer", None)): c.scheduler
                          for c in getattr(trainer, "lr_scheduler_configs", None) or ()}
            for opt in trainer.optimizers:
                opt = getattr(opt, "optimizer", opt)
                self.run.add(pl_module, opt, scaler=scaler, scheduler=schedulers.get(id(opt)))
                self._handles.append(opt.register_step_post_hook(lambda o, args, kwargs: self.run.after_step(o)))
            if self.loss_fn is not None and self.run.primary is not None:
                refused = audit_refusal(trainer, pl_module)
                # the audit checks a scheduler itself at each evaluation (heal/audit_schedule.py); the probe
                # replay's rates are absolute, which a scheduler would overwrite
                add_rate_audit(self.run.primary, self.loss_fn, refused)
                add_probe_replay(self.run.primary, self.loss_fn,
                                 refused or ("a learning-rate scheduler sets the rate" if schedulers else None))
        except Exception as exc:
            self.run.fail("on_fit_start", exc)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._batch = batch

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        self._loss = loss
        if self.run.observing_next and not self.run.failed:
            try:  # the loss's graph still holds the loss functions' inputs and targets before backward
                self._observed = Observed(graph=read_loss_graph(loss))
            except Exception as exc:
                self.run.fail("reading the loss graph", exc)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        observed, self._observed = self._observed, None
        self.run.before_step(getattr(optimizer, "optimizer", optimizer), self._loss, self._batch, observed)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # Lightning runs the epoch's validation before this hook: the monitored metric is fresh.
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and self.higher_is_better:
            self.run.end_epoch(val_metric=value)
        else:
            self.run.end_epoch(val_loss=value)
        if self.run.should_stop:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        try:
            self.run.finish()
            if trainer.is_global_zero and self.run.primary is not None:
                out = self.out or Path(trainer.log_dir or os.getcwd()) / "trainmedic"
                self.report_dir = self.run.save(out, meta={"entry": "lightning"})
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()
            self.run.close()


def audit_refusal(trainer: Any, pl_module: Any) -> str | None:
    """Why the replays of the rate audit and of the probe replay (plain steps of ``loss_fn(pl_module(x), y)``
    at a constant rate) would not train as this Trainer does, or None. Lightning clips and accumulates after
    the callback has seen the gradients, so the driver cannot notice either by itself. A scheduler is not
    refused here: the audit judges it at each evaluation (:mod:`trainmedic.heal.audit_schedule`), and the
    caller refuses the probe replay under one."""
    if len(trainer.optimizers) != 1:
        return "the module has several optimizers"
    if not pl_module.automatic_optimization:
        return "the module optimizes manually"
    if trainer.gradient_clip_val:
        return f"the Trainer clips gradients (gradient_clip_val={trainer.gradient_clip_val})"
    if (trainer.accumulate_grad_batches or 1) > 1:
        return f"the Trainer accumulates gradients (accumulate_grad_batches={trainer.accumulate_grad_batches})"
    if type(pl_module).forward is pl.LightningModule.forward:
        return "the module defines no forward for loss_fn(pl_module(x), y)"
    return None


__all__ = ["MedicCallback"]

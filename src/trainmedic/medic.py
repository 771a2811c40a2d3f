"""Medic: the front end for a hand-written training loop.

    medic = trainmedic.Medic(model, optimizer, mode="heal")
    for epoch in range(epochs):
        for x, y in loader:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            medic.step(loss)                 # instead of optimizer.step()
        medic.end_epoch(val_loss=evaluate(model))
        if medic.should_stop:
            break
    medic.close()                            # the end of training: the last checks of a short run
    medic.save_report("runs/exp1")

or ``with trainmedic.Medic(model, optimizer) as medic:`` around the loop, which closes it also when the loop
raises.

A Medic is the step protocol of :class:`~trainmedic.driver.Driver` with the loop's own duties added: it
takes the optimizer step (through the GradScaler when there is one) and steps the scheduler. Everything
else — signals, detectors, heal actions, the record — is the driver's, shared with ``trainmedic run`` and
the Lightning and Hugging Face callbacks.
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Iterable
from typing import Any

import torch

from trainmedic.callbacks import MedicCallback
from trainmedic.config import Thresholds
from trainmedic.driver import Driver
from trainmedic.heal.policy import MODES
from trainmedic.observe.live import first_tensor
from trainmedic.preflight import follows_phases
from trainmedic.rules.registry import get_rule

#: The Medics of this process, for training phases: a Medic built after another one had stepped (a
#: fine-tuning after a pre-training, a student after its teacher) ends the earlier ones' phase at its first
#: step (see :meth:`Medic.step`). Medics built before any step (a GAN's two) start no phase.
_MEDICS: weakref.WeakSet[Medic] = weakref.WeakSet()
_BUILT = itertools.count()


class Medic(Driver):
    """Watches a training loop and, in ``mode="heal"``, repairs what can be repaired.

    Args:
        model: the module being trained.
        optimizer: its optimizer; ``medic.step(loss)`` calls ``optimizer.step()`` for you.
        scheduler: optional LR scheduler. Medic steps it (remove your own ``scheduler.step()``): per
            step for OneCycleLR/CyclicLR, per epoch otherwise (``scheduler_interval`` overrides);
            ReduceLROnPlateau receives the validation loss in ``end_epoch``.
        scaler: optional ``torch.amp.GradScaler``; call ``scaler.scale(loss).backward()`` as usual and
            ``medic.step(loss)`` instead of ``scaler.step(optimizer); scaler.update()``.
        mode: ``"watch"`` reports only; ``"heal"`` also skips, clips, rolls back, probes the learning rate
            after a rollback (and warms up to it when the run started unstable) and changes the lr.
        thresholds: a :class:`Thresholds` or a dict of overrides.
        console: print findings and a live status line on stderr.
        restore_best: keep the weights of the best evaluation and restore them on early stop
            (default: on in heal mode).
        callbacks: :class:`~trainmedic.callbacks.MedicCallback` objects (forensics, checkpoints, ...).
        checkpoint_dir: write crash-safe checkpoints there (see :mod:`trainmedic.heal.checkpoint`);
            ``every`` steps between them (None: at each epoch end), ``keep`` newest kept plus the best.
        loss_fn: ``loss_fn(model(inputs), target)``, the loss of the loop. With it and
            ``medic.step(loss, batch=(inputs, target))`` (or ``(inputs, target, indices)``), pre-flight
            replays the first batch (TM201-TM207, TM211) and forensics replays a non-finite one
            (TM210 op, TM313 rows, quarantined in heal mode: see ``medic.quarantined``).
        preflight: run the cheap wiring checks at the first step (:mod:`trainmedic.preflight`).
        forensics: replay non-finite steps to name the op and the rows (:mod:`trainmedic.heal.forensics`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        scaler: Any = None,
        mode: str = "watch",
        *,
        thresholds: Thresholds | dict[str, Any] | None = None,
        console: bool = True,
        scheduler_interval: str | None = None,
        restore_best: bool | None = None,
        callbacks: Iterable[MedicCallback] = (),
        checkpoint_dir: str | os.PathLike[str] | None = None,
        every: int | None = None,
        keep: int = 3,
        loss_fn: Any = None,
        preflight: bool = True,
        forensics: bool = True,
    ) -> None:
        _validate(model, optimizer, mode)
        super().__init__(model, optimizer, mode=mode, thresholds=thresholds, scheduler=scheduler, scaler=scaler,
                         console=console, restore_best=restore_best, callbacks=callbacks, loss_fn=loss_fn,
                         preflight=preflight, forensics=forensics)
        self.scheduler_interval = scheduler_interval or _default_interval(scheduler)
        self.built_order = next(_BUILT)  # Medics built earlier may belong to an earlier phase
        self._opens_phase = any(m.step_count for m in _MEDICS)
        _MEDICS.add(self)
        if checkpoint_dir is not None:
            from trainmedic.heal.checkpoint import CheckpointCallback

            self.add_callback(CheckpointCallback(checkpoint_dir, every=every, keep=keep))

    def step(self, loss: torch.Tensor, batch: Any = None) -> bool:
        """Check this step, then apply it, skip it, clip it or roll back. Returns True if applied.

        ``batch`` (optional, e.g. ``(x, y)``) lets pre-flight and forensics replay the step.
        """
        _check_loss(loss)
        if self._opens_phase:
            self._start_phase()
        if self.scaler is not None:
            _unscale(self.scaler, self.optimizer)  # true gradient norms; scaler.step() reuses the result
        verdict = self.before_step(loss, batch)
        if verdict.proceed:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if verdict.finite and verdict.applied and self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
        self.after_step()
        return verdict.applied

    def _start_phase(self) -> None:
        """This Medic was built after another had stepped and takes its first step: a new training phase.
        The earlier Medics' optimizers have stepped for the last time (the program moved on), so their
        phase ends (:meth:`~trainmedic.engine_phase.PhaseEnd.end_phase`: a short one gets its last slow check)."""
        self._opens_phase = False
        earlier = [m for m in list(_MEDICS) if m is not self and m.built_order < self.built_order and m.step_count]
        for m in earlier:
            m.guard("end-of-phase checks", m.engine.end_phase)
        follows_phases(self, earlier)  # a pre-trained body is no initialization

    def end_epoch(self, val_loss: float | torch.Tensor | None = None, val_metric: float | torch.Tensor | None = None,
                  *, higher_is_better: bool = True) -> Any:
        """Close an epoch: plateau, overfitting, early stopping, best weights, epoch schedulers."""
        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        verdict = self.judge_epoch(val_loss, val_metric, higher_is_better=higher_is_better,
                                   plateau_scheduler=plateau)
        if self.scheduler is not None and not self.should_stop:
            if plateau:
                if verdict.monitored is not None and verdict.monitored == verdict.monitored:
                    self.scheduler.step(verdict.monitored)
            elif self.scheduler_interval == "epoch":
                self.scheduler.step()
        self.finish_epoch(verdict)
        return verdict

    def close(self) -> None:
        """The end of training: the optimizer will not step again.

        Ends this Medic's training phase as ``trainmedic run`` does when the script exits: a run shorter
        than the early window ``slow_window`` gets its one last slow check over all its steps (a learning
        rate far too low, updates that stall: TM315, TM312), which no step or epoch end can run since neither
        knows that it is the last. Then the hooks on the model and the loss are removed. ``end_epoch``
        cannot stand in for it: the last epoch looks like every other one until no step follows.

        Idempotent, and never raises into the training script: a check that fails is switched off and
        reported (TM901). The findings, the report and ``state_dict()`` stay available afterwards.
        """
        self.guard("end-of-phase checks", self.engine.end_phase)
        try:
            super().close()
        except Exception as exc:  # detaching hooks must not break the script's last line
            self.engine.disable("close", exc)

    def __enter__(self) -> Medic:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        """``with Medic(...) as medic:`` closes the Medic at the end of the block, also when the block raises
        (the exception propagates unchanged). When it raises, the input of the last training forward is read
        first, as ``trainmedic run`` reads the batch of a loss function that raised: NaN/Inf rows (TM101) and,
        if the first steps' data was not judged yet, sentinel values and scales (TM109, TM108). A loss that
        rejects its input (``binary_cross_entropy`` on a NaN, a -9999 target) raises before ``medic.step``
        could see the step, so these rows are the only diagnosis the run gets."""
        if isinstance(exc, Exception):
            self.guard("live-checks", self._training_raised)
        self.close()
        return False

    def _training_raised(self) -> None:
        inputs = first_tensor(self.live.last_inputs)
        if inputs is not None:
            self.live.loss_raised(self.step_count, (inputs, None), self.report, when="the training loop raised")

    def resume(self, directory: str | os.PathLike[str] | None = None) -> Any:
        """Continue from the newest good checkpoint (default: ``checkpoint_dir``): weights, optimizer,
        scheduler, scaler, RNGs, step counter and history. Returns its info, or None on a fresh start."""
        from trainmedic.heal.checkpoint import resume

        return resume(self, directory)


def _validate(model: Any, optimizer: Any, mode: str) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"Medic needs the torch.nn.Module being trained as `model`, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
    if not getattr(optimizer, "param_groups", None):
        raise ValueError(
            "the optimizer has no param_groups; pass a torch.optim.Optimizer built on the model's "
            "parameters, e.g. torch.optim.Adam(model.parameters())"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "the model has no trainable parameters (all have requires_grad=False); "
            "there is nothing to train or watch"
        )


def _unscale(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as exc:  # the user already unscaled this step (e.g. to clip): fine
        if "already been called" not in str(exc):
            raise


def _default_interval(scheduler: Any) -> str:
    cyclic = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
    return "step" if isinstance(scheduler, cyclic) else "epoch"


def _check_loss(loss: Any) -> None:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            f"medic.step() takes the loss tensor you called backward() on, got {type(loss).__name__}; "
            "pass `loss`, not `loss.item()`"
        )
    if loss.numel() != 1:
        raise ValueError(
            f"medic.step() needs a scalar loss, got a tensor of shape {tuple(loss.shape)}; "
            "reduce it first (e.g. loss.mean()) — a non-scalar loss often means a broadcast bug (TM201)"
        )


__all__ = ["Medic", "Thresholds", "get_rule"]

"""Medic: the object a training loop talks to.

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
    medic.save_report("runs/exp1")

``step`` gathers the step's signals in one device-to-host copy, runs the cheap checks on every step and
the window detectors every few steps, then applies the optimizer step, or (in heal mode) skips, clips
or rolls back. Detectors live in ``trainmedic.rules``; this module only feeds them and acts.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainmedic import __version__
from trainmedic.callbacks import MedicCallback
from trainmedic.config import Thresholds
from trainmedic.findings import Finding, FindingLog, atomic_write_text, jsonable, write_findings
from trainmedic.heal.snapshot import Snapshot
from trainmedic.report.console import MedicConsole
from trainmedic.rules import runtime as rt
from trainmedic.rules.internal import CHECK_FAILED
from trainmedic.rules.registry import get_rule
from trainmedic.signals.collect import Collector, StepSignals
from trainmedic.signals.history import Downsampled, Ring

MODES = ("watch", "heal")
MAX_EVENTS = 5000
MAX_EVALUATIONS = 1000  # end_epoch records kept (halved when twice as many), so memory stays bounded


class Monitor:
    """The running state the detectors read. Snapshotted with the weights and restored on rollback."""

    def __init__(self, cfg: Thresholds) -> None:
        self.losses = Ring(cfg.window)
        self.steps = Ring(cfg.window)
        self.log_gnorms = Ring(cfg.window)
        self.first_norms = Ring(cfg.window)
        self.last_norms = Ring(cfg.window)
        self.finite_steps = 0
        self.initial = math.nan
        self._initial_parts: list[float] = []
        self.best = math.inf
        self.best_step = -1
        self.smoothed = math.nan
        self.spike_threshold = math.inf
        self.clip_bound = math.inf
        self.gnorm_median = math.nan
        self.last_anomaly = -(10**9)
        self.osc_quiet_until = -1

    def observe(self, step: int, loss: float, cfg: Thresholds) -> None:
        self.losses.append(loss)
        self.steps.append(step)
        self.finite_steps += 1
        if len(self._initial_parts) < cfg.smooth:
            self._initial_parts.append(loss)
            self.initial = float(np.mean(self._initial_parts))


class Medic:
    """Watches a training loop and, in ``mode="heal"``, repairs what can be repaired.

    Args:
        model: the module being trained.
        optimizer: its optimizer; ``medic.step(loss)`` calls ``optimizer.step()`` for you.
        scheduler: optional LR scheduler. Medic steps it (remove your own ``scheduler.step()``): per
            step for OneCycleLR/CyclicLR, per epoch otherwise (``scheduler_interval`` overrides);
            ReduceLROnPlateau receives the validation loss in ``end_epoch``.
        scaler: optional ``torch.amp.GradScaler``; call ``scaler.scale(loss).backward()`` as usual and
            ``medic.step(loss)`` instead of ``scaler.step(optimizer); scaler.update()``.
        mode: ``"watch"`` reports only; ``"heal"`` also skips, clips, rolls back and changes the lr.
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
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Medic needs the torch.nn.Module being trained as `model`, got {type(model).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
        groups = getattr(optimizer, "param_groups", None)
        if not groups:
            raise ValueError(
                "the optimizer has no param_groups; pass a torch.optim.Optimizer built on the model's "
                "parameters, e.g. torch.optim.Adam(model.parameters())"
            )
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(
                "the model has no trainable parameters (all have requires_grad=False); "
                "there is nothing to train or watch"
            )
        if isinstance(thresholds, dict):
            thresholds = Thresholds().replace(**thresholds)
        self.cfg: Thresholds = thresholds or Thresholds()
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.mode = mode
        self.restore_best = (mode == "heal") if restore_best is None else restore_best
        self.scheduler_interval = scheduler_interval or _default_interval(scheduler)

        # Watch the optimizer's parameters, in the model's order (first layer first) where known.
        names = {id(p): n for n, p in model.named_parameters()}
        opt_params = [p for g in groups for p in g["params"] if p.requires_grad]
        opt_ids = {id(p) for p in opt_params}
        ordered = [p for p in model.parameters() if id(p) in opt_ids]
        ordered += [p for p in opt_params if id(p) not in {id(q) for q in ordered}]
        self._collector = Collector(ordered, [names.get(id(p), f"param{i}") for i, p in enumerate(ordered)])
        weights = [i for i, p in enumerate(ordered) if p.dim() >= 2]
        self._first = weights[0] if weights else 0
        self._last = weights[-1] if weights else len(ordered) - 1

        self.monitor = Monitor(self.cfg)
        self.step_count = 0  # medic.step() calls so far
        self.epoch = 0
        self.should_stop = False
        self.log = FindingLog()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.events_dropped = 0
        self.history = Downsampled(("loss", "grad_norm", "lr"))
        self.layer_history = Downsampled(("norms",), capacity=512)
        self.epochs: list[dict[str, Any]] = []
        self.console = MedicConsole(enabled=console)

        self._disabled: set[str] = set()
        self._snapshots: deque[Snapshot] = deque(maxlen=max(1, self.cfg.snapshots_kept))
        self._best_snapshot: Snapshot | None = None
        self._rollbacks = 0
        self._lr_factor = 1.0
        self._consecutive_nonfinite = 0
        self._stale_run = 0
        self._zero_after_step = False
        self._amp_skips = 0
        self._ratios = Ring(64)
        self._epoch_loss_sum = 0.0
        self._epoch_loss_n = 0
        self._val_hist: list[float] = []
        self._train_hist: list[float] = []
        self._plateau_from = 0
        self._plateau_cooldown = 0
        self._best_val = math.inf
        self._best_weights: dict[str, torch.Tensor] | None = None
        self._best_epoch: int | None = None
        self._slow_checked = False
        self._pending_rollback: rt.Detection | None = None
        self._started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.last_batch: Any = None
        self.loss_fn = loss_fn
        self.quarantined: set[Any] = set()  # TM313 rows left out in heal mode: dataset indices or content hashes
        self.callbacks: list[MedicCallback] = []
        if preflight or forensics:  # pre-flight and forensics plug in as callbacks (trainmedic.preflight, heal)
            from trainmedic.heal.forensics import Forensics
            from trainmedic.preflight import PreflightCallback

            for cb in (PreflightCallback() if preflight else None, Forensics() if forensics else None):
                if cb is not None:
                    self.add_callback(cb)
        for cb in callbacks:
            self.add_callback(cb)
        if checkpoint_dir is not None:
            from trainmedic.heal.checkpoint import CheckpointCallback

            self.add_callback(CheckpointCallback(checkpoint_dir, every=every, keep=keep))

    # ------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        return self.log.as_list()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def add_callback(self, callback: MedicCallback) -> None:
        try:
            callback.on_attach(self)
        except Exception as exc:
            self._disable(f"callback {getattr(callback, 'name', type(callback).__name__)}.on_attach", exc)
            return
        self.callbacks.append(callback)

    def step(self, loss: torch.Tensor, batch: Any = None) -> bool:
        """Check this step, then apply it, skip it, clip it or roll back. Returns True if applied.

        ``batch`` (optional, e.g. ``(x, y)``) lets forensics replay the step when it turns non-finite.
        """
        _check_loss(loss)
        t = self.step_count
        self.last_batch = batch
        loss = self._loss_hooks(t, loss, batch)  # e.g. forensics recomputes a batch without quarantined rows
        self._call("on_before_step", self, t, loss, batch)
        sig: StepSignals | None = None
        if self.scaler is not None:
            _unscale(self.scaler, self.optimizer)  # true gradient norms; scaler.step() reuses the result
        if "signals" not in self._disabled:
            try:
                sig = self._collector.collect(loss)
                if t == 0:
                    self._collector.attach_probe()
            except Exception as exc:  # instrumentation must never break the user's loop
                self._disable("signals", exc)
        applied = True
        if sig is None:
            self._optimizer_step()
        else:
            try:
                applied = self._step_with_signals(t, sig)
            except Exception as exc:
                self._disable("detectors", exc)
                self._optimizer_step()
        self._collector.reset_backwards()
        self.step_count += 1
        self._call("on_step_end", self, t, applied)
        return applied

    def end_epoch(self, val_loss: float | torch.Tensor | None = None,
                  val_metric: float | torch.Tensor | None = None, *, higher_is_better: bool = True) -> None:
        """Close an epoch: plateau, overfitting, early stopping, best weights, epoch schedulers."""
        val = _to_float(val_loss)
        metric = _to_float(val_metric)
        train = self._epoch_loss_sum / self._epoch_loss_n if self._epoch_loss_n else math.nan
        self._epoch_loss_sum, self._epoch_loss_n = 0.0, 0
        record = {"type": "epoch", "epoch": self.epoch, "step": self.step_count, "train_loss": train,
                  "val_loss": val, "val_metric": metric, "lr": self.lr}
        self.epochs.append(record)
        if len(self.epochs) > 2 * MAX_EVALUATIONS:
            self.epochs = self.epochs[::2]  # a very long run keeps every other epoch record for the report
        self._event(record)
        monitored = val if val is not None else (
            (-metric if higher_is_better else metric) if metric is not None else train)
        try:
            self._epoch_checks(monitored, train, has_val=val is not None or metric is not None)
        except Exception as exc:
            self._disable("epoch-checks", exc)
        if self.scheduler is not None and not self.should_stop:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                if monitored is not None and math.isfinite(monitored):
                    self.scheduler.step(monitored)
            elif self.scheduler_interval == "epoch":
                self.scheduler.step()
        self._call("on_epoch_end", self, self.epoch, record)
        self.epoch += 1

    def save_report(self, out_dir: str | os.PathLike[str], html: bool = True) -> Path:
        """Write ``findings.json``, ``events.jsonl`` and ``report.html`` into ``out_dir``.

        Under torch.distributed only rank 0 writes; the other ranks return the path without writing.
        """
        out = Path(out_dir)
        if _rank() != 0:
            return out
        out.mkdir(parents=True, exist_ok=True)
        write_findings(out / "findings.json", self.findings)
        atomic_write_text(out / "events.jsonl", "".join(json.dumps(jsonable(e)) + "\n" for e in self.event_stream()))
        if html:
            try:
                from trainmedic.report.html import write_report

                write_report(out)
            except Exception as exc:  # a report failure must not lose the findings written above
                self._disable("html-report", exc)
                write_findings(out / "findings.json", self.findings)
        self._call("on_save", self, out)
        self.console.close()
        return out

    def event_stream(self) -> Iterable[dict[str, Any]]:
        """Everything ``events.jsonl`` holds: a meta line, the events, then the downsampled curves."""
        yield {"type": "meta", "version": 1, "trainmedic": __version__, "mode": self.mode,
               "started": self._started, "steps": self.step_count, "epochs": self.epoch,
               "events_dropped": self.events_dropped, "layers": list(self._collector.names),
               "thresholds": self.cfg.as_dict()}
        yield from self.events
        for row in self.history.as_dicts():
            yield {"type": "sample", **row}
        for row in self.layer_history.as_dicts():
            yield {"type": "layer_sample", "step": row["step"], "norms": row["norms"]}

    def resume(self, directory: str | os.PathLike[str] | None = None) -> Any:
        """Continue from the newest good checkpoint (default: ``checkpoint_dir``): weights, optimizer,
        scheduler, scaler, RNGs, step counter and history. Returns its info, or None on a fresh start."""
        from trainmedic.heal.checkpoint import resume

        return resume(self, directory)

    def close(self) -> None:
        self._collector.detach()
        self.console.close()

    def state_dict(self) -> dict[str, Any]:
        """The Medic's own state (not the model's): counters, detector state, findings, history."""
        return {
            "version": 1, "step_count": self.step_count, "epoch": self.epoch, "should_stop": self.should_stop,
            "findings": self.log.state_dict(), "events": list(self.events),
            "events_dropped": self.events_dropped, "history": self.history.state_dict(),
            "layer_history": self.layer_history.state_dict(), "epochs": list(self.epochs),
            "monitor": _monitor_state(self.monitor), "rollbacks": self._rollbacks, "lr_factor": self._lr_factor,
            "val_hist": list(self._val_hist), "train_hist": list(self._train_hist),
            "plateau_from": self._plateau_from, "plateau_cooldown": self._plateau_cooldown,
            "best_val": self._best_val, "best_epoch": self._best_epoch, "zero_after_step": self._zero_after_step,
            "slow_checked": self._slow_checked, "ratios": self._ratios.state_dict(), "started": self._started,
            "quarantined": list(self.quarantined),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.epoch = int(state["epoch"])
        self.should_stop = bool(state["should_stop"])
        self.log.load_state_dict(state["findings"])
        self.events = deque(state["events"], maxlen=MAX_EVENTS)
        self.events_dropped = int(state["events_dropped"])
        self.history.load_state_dict(state["history"])
        self.layer_history.load_state_dict(state["layer_history"])
        self.epochs = list(state["epochs"])
        self.monitor = _monitor_from_state(state["monitor"], self.cfg)
        self._rollbacks = int(state["rollbacks"])
        self._lr_factor = float(state["lr_factor"])
        self._val_hist = list(state["val_hist"])
        self._train_hist = list(state["train_hist"])
        self._plateau_from = int(state["plateau_from"])
        self._plateau_cooldown = int(state["plateau_cooldown"])
        self._best_val = float(state["best_val"])
        self._best_epoch = state["best_epoch"]
        self._zero_after_step = bool(state["zero_after_step"])
        self._slow_checked = bool(state["slow_checked"])
        self._ratios.load_state_dict(state["ratios"])
        self._started = state["started"]
        self.quarantined = set(state.get("quarantined", ()))

    # ------------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------------
    def _step_with_signals(self, t: int, sig: StepSignals) -> bool:
        cfg, mon = self.cfg, self.monitor
        heal = self.mode == "heal"
        if heal and t == 0:
            self._take_snapshot(0)  # the initial weights: always a valid place to return to
        if sig.update_norm is not None and sig.weight_norm:
            self._ratios.append(sig.update_norm / sig.weight_norm)

        # TM310: the first backward since the last step found the old gradients still there.
        if sig.stale is not None and sig.stale > 0:
            self._stale_run += 1
            det = rt.detect_stale_gradients(self._stale_run, self._collector.backwards, cfg)
            if det:
                self._report(det, t, action="zero gradients after each step" if heal else None)
                if heal and not self._zero_after_step:
                    self._zero_after_step = True
                    self._action(t, "zero-grad", "TM310", detail="gradients are now reset after each step")
        else:
            self._stale_run = 0

        # Non-finite loss or gradients: never apply the step.
        if not sig.loss_finite or not sig.grads_finite:
            return self._nonfinite_step(t, sig)
        self._consecutive_nonfinite = 0
        self._amp_skips = 0

        self._epoch_loss_sum += sig.loss
        self._epoch_loss_n += 1
        mon.observe(t, sig.loss, cfg)
        mon.first_norms.append(sig.norms[self._first] if sig.norms else 0.0)
        mon.last_norms.append(sig.norms[self._last] if sig.norms else 0.0)
        warm = mon.finite_steps > cfg.warmup_steps

        # TM303: O(1) check against the cached running bound.
        clip_to = None
        if sig.grad_norm > 0:
            det = rt.detect_exploding_gradients(sig.grad_norm, mon.spike_threshold, mon.gnorm_median) if warm else None
            if det:
                mon.last_anomaly = t
                clip_to = mon.clip_bound if heal else None
                det.evidence["clipped_to"] = clip_to
                self._report(det, t, action=f"clipped to {clip_to:.4g}" if heal else None)
                mon.log_gnorms.append(math.log(mon.clip_bound))
            else:
                mon.log_gnorms.append(math.log(sig.grad_norm))

        if t % cfg.check_every == 0:
            self._window_checks(t)
            if self.mode == "heal" and self._pending_rollback is not None:
                det = self._pending_rollback
                self._pending_rollback = None
                self._record_sample(t, sig)
                return self._rollback(t, det)

        self._record_sample(t, sig)
        if clip_to is not None and sig.grad_norm > clip_to:
            torch._foreach_mul_(self._collector.grads(), clip_to / sig.grad_norm)
            self._action(t, "clip", "TM303", grad_norm=sig.grad_norm, clipped_to=clip_to)
        self._apply_step(t)
        if heal and (t + 1) % cfg.snapshot_every == 0 and self._healthy(t):
            self._take_snapshot(t + 1)  # labelled with the step it precedes
        self.console.status(t, sig.loss, sig.grad_norm, self.lr, self.mode)
        return True

    def _window_checks(self, t: int) -> None:
        cfg, mon = self.cfg, self.monitor
        losses = mon.losses.values()
        n = len(losses)
        if n >= cfg.smooth:
            mon.smoothed = rt.median(losses[-cfg.smooth:])  # robust to a lone outlier
            if mon.finite_steps >= cfg.smooth and mon.smoothed < mon.best:
                mon.best, mon.best_step = mon.smoothed, t
        if len(mon.log_gnorms) >= 8:
            mon.spike_threshold, mon.clip_bound, mon.gnorm_median = rt.gradient_bounds(mon.log_gnorms.values(), cfg)
        if mon.finite_steps <= cfg.warmup_steps:
            return
        heal = self.mode == "heal"

        # A spike names its onset more precisely than divergence (the step of the best loss), so it is
        # asked first: the rollback then loses fewer good steps.
        steps = mon.steps.values()
        det = rt.detect_loss_spike(losses, steps, mon.initial, mon.best, cfg)
        if det is None:
            det = rt.detect_divergence(mon.smoothed, mon.best, mon.best_step, mon.initial, cfg, losses, steps)
        if det:
            mon.last_anomaly = t
            self._report(det, t, action="roll back, lr x0.5" if heal else None)
            if heal:
                self._pending_rollback = det
                return
            # In watch mode the window is reset so one event is counted once, not every check.
            mon.losses.clear()
            mon.steps.clear()
            mon.best, mon.best_step = mon.smoothed, t

        if t % cfg.slow_check_every:
            return
        if t >= mon.osc_quiet_until:
            det = rt.detect_oscillation(losses, cfg)
            if det:
                mon.osc_quiet_until = t + cfg.osc_window
                self._report(det, t, action="lr x0.5" if heal else None)
                if heal:
                    self._scale_lr(t, cfg.oscillation_lr_factor, "TM307")

        if "TM304" not in self._disabled:
            det = rt.detect_vanishing(mon.first_norms.values(), mon.last_norms.values(), cfg)
            if det:
                self._report(det, t)

        det = rt.detect_stalled(self._ratios.values(), cfg)
        if det:
            self._report(det, t)

        if not self._slow_checked and mon.finite_steps >= cfg.slow_window:
            self._slow_checked = True
            early = np.asarray(mon._initial_parts)
            det = rt.detect_slow_convergence(early, losses[-cfg.smooth:], self._ratios.values(), cfg)
            if det:
                self._report(det, t)

    def _apply_step(self, t: int) -> None:
        """The optimizer step (sampling the update/weight ratio now and then) and a per-step scheduler.

        The step waits for the verdict, also in watch mode: forensics must replay a non-finite batch on
        the weights that produced it, not on weights a NaN step has already overwritten.
        """
        sampled = (t % self.cfg.ratio_every == 0) and "update-ratio" not in self._disabled
        if sampled:
            self._guard("update-ratio", self._collector.before_update)
        self._optimizer_step()
        if sampled:
            self._guard("update-ratio", self._collector.after_update)
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()

    def _nonfinite_step(self, t: int, sig: StepSignals) -> bool:
        cfg = self.cfg
        heal = self.mode == "heal"
        self._consecutive_nonfinite += 1
        self.monitor.last_anomaly = t
        self._record_sample(t, sig)
        if self.scaler is not None and sig.loss_finite:
            # Mixed precision: overflowing scaled gradients are the scaler's business; it skips and
            # lowers its scale. Only a long run of skips is a problem (TM314).
            self._amp_skips += 1
            self._scaler_step()
            det = None
            if self._amp_skips >= cfg.amp_max_consecutive_skips:
                det = rt.detect_amp_collapse(self._amp_skips, float(self.scaler.get_scale()), cfg)
            if det:
                self._report(det, t)
            return False
        if not sig.loss_finite:
            det = rt.Detection(rt.NONFINITE_LOSS.code, f"loss is {sig.loss}", {"loss": sig.loss})
        else:
            bad = [n for n, v in zip(self._collector.names, sig.norms) if not math.isfinite(v)]
            det = rt.Detection(rt.NONFINITE_GRAD.code,
                               f"non-finite gradient in {len(bad)} parameter(s): {', '.join(bad[:5])}",
                               {"parameters": bad[:20], "n_parameters": len(bad), "loss": sig.loss})
        finding = self._report(det, t, action="step skipped" if heal else None)
        self._call("on_nonfinite", self, t, sig, finding, self.last_batch)
        if heal:
            self.optimizer.zero_grad(set_to_none=True)
            self._action(t, "skip-step", det.code, loss=sig.loss, grad_norm=sig.grad_norm)
            if self._consecutive_nonfinite >= cfg.nonfinite_rollback_after:
                self._consecutive_nonfinite = 0
                return self._rollback(t, det)
            return False
        # Watch mode changes nothing: the step is applied as the user's loop would have applied it.
        self._optimizer_step()
        return True

    # ------------------------------------------------------------------------------------------------
    # actions
    # ------------------------------------------------------------------------------------------------
    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self._scaler_step()
        else:
            self.optimizer.step()
        if self._zero_after_step:
            self.optimizer.zero_grad(set_to_none=True)

    def _scaler_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self._zero_after_step:
            self.optimizer.zero_grad(set_to_none=True)

    def _rollback(self, t: int, det: rt.Detection) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        if self._rollbacks >= self.cfg.max_rollbacks:
            self._exhausted(t, f"{self._rollbacks} rollbacks used (max_rollbacks={self.cfg.max_rollbacks})")
            return False
        snap = self._choose_snapshot(det.onset)
        if snap is None:
            self._exhausted(t, "no healthy snapshot to roll back to")
            return False
        lr_before = self.lr
        self.monitor = snap.restore(self.model, self.optimizer, self.scheduler, self.scaler)
        # The new rate is at most rollback_lr_factor times the rate that failed. When the rate had risen
        # since the snapshot (a schedule, a manual change), the snapshot's own rate already satisfies
        # that and is kept on the first rollback; later rollbacks lower it further.
        lr_snap = self.lr * (self._lr_factor / snap.lr_factor)
        keep = 1.0 if self._rollbacks == 0 else self.cfg.rollback_lr_factor
        target = min(lr_snap * keep, self.cfg.rollback_lr_factor * lr_before)
        factor = target / self.lr if self.lr > 0 else 1.0
        self._apply_lr_factor(factor)
        if self.lr < self.cfg.min_lr:
            self._exhausted(t, f"learning rate {self.lr:.3g} fell below min_lr={self.cfg.min_lr:g}")
            return False
        self._lr_factor = snap.lr_factor * factor
        self._rollbacks += 1
        # Snapshots taken after the chosen one may already hold the fault.
        self._snapshots = deque([s for s in self._snapshots if s.step <= snap.step], maxlen=self._snapshots.maxlen)
        self.monitor.last_anomaly = t
        self._action(t, "rollback", det.code, to_step=snap.step, lr_before=lr_before, lr_after=self.lr,
                     rollbacks=self._rollbacks)
        self.console.line(f"step {t}: rolled back to step {snap.step}, lr {lr_before:.3g} -> {self.lr:.3g}",
                          "warning")
        self._call("on_rollback", self, t, snap.step)
        return False

    def _choose_snapshot(self, onset: int | None) -> Snapshot | None:
        candidates = sorted({id(s): s for s in [*self._snapshots, self._best_snapshot] if s is not None}.values(),
                            key=lambda s: s.step)
        if not candidates:
            return None
        if onset is not None:
            before = [s for s in candidates if s.step <= onset]
            if before:
                return before[-1]
        return candidates[0]

    def _take_snapshot(self, t: int) -> None:
        try:
            snap = Snapshot.take(t, self.model, self.optimizer, self.scheduler, self.scaler, self.monitor,
                                 self._lr_factor, self.monitor.smoothed)
        except Exception as exc:
            self._disable("snapshots", exc)
            return
        self._snapshots.append(snap)
        best = self._best_snapshot
        if best is None or not (snap.loss >= best.loss):
            self._best_snapshot = snap

    def _healthy(self, t: int) -> bool:
        if "snapshots" in self._disabled:
            return False
        mon = self.monitor
        if t - mon.last_anomaly < self.cfg.snapshot_every:
            return False
        if math.isfinite(mon.best) and math.isfinite(mon.smoothed):
            rise = mon.smoothed - mon.best
            if rise > 0.5 * max(abs(mon.best), mon.initial - mon.best):
                return False
        return True

    def _scale_lr(self, t: int, factor: float, reason: str) -> bool:
        before = self.lr
        if before * factor < self.cfg.min_lr:
            self._exhausted(t, f"learning rate {before:.3g} cannot go below min_lr={self.cfg.min_lr:g}")
            return False
        self._apply_lr_factor(factor)
        self._lr_factor *= factor
        self._action(t, "lr-change", reason, lr_before=before, lr_after=self.lr)
        self.console.line(f"step {t}: lr {before:.3g} -> {self.lr:.3g} ({reason})", "warning")
        return True

    def _apply_lr_factor(self, factor: float) -> None:
        if factor == 1.0:
            return
        for g in self.optimizer.param_groups:
            for key in ("lr", "initial_lr", "max_lr", "min_lr"):
                if key in g and isinstance(g[key], (int, float)) and not isinstance(g[key], bool):
                    g[key] = g[key] * factor
                elif key == "lr" and isinstance(g.get(key), torch.Tensor):
                    g[key].mul_(factor)
        base = getattr(self.scheduler, "base_lrs", None)
        if isinstance(base, list):
            self.scheduler.base_lrs = [b * factor for b in base]

    def _exhausted(self, t: int, why: str) -> None:
        self.should_stop = True
        self._report(rt.Detection(rt.HEAL_EXHAUSTED.code, f"heal stopped: {why}", {"reason": why}), t,
                     action="should_stop set")

    def _epoch_checks(self, monitored: float | None, train: float, has_val: bool) -> None:
        if monitored is None or not math.isfinite(monitored):
            return
        cfg = self.cfg
        heal = self.mode == "heal"
        t = self.step_count
        self._val_hist.append(monitored)
        self._train_hist.append(train)
        if len(self._val_hist) > 2 * MAX_EVALUATIONS:  # bounded: the detectors look at recent evaluations
            del self._val_hist[:MAX_EVALUATIONS], self._train_hist[:MAX_EVALUATIONS]
            self._plateau_from = max(0, self._plateau_from - MAX_EVALUATIONS)
        improved = monitored < self._best_val - cfg.plateau_threshold * abs(self._best_val) \
            if math.isfinite(self._best_val) else True
        if improved:
            self._best_val = monitored
            self._best_epoch = self.epoch
            if self.restore_best:
                self._best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if has_val and "TM309" not in self._disabled:
            det = rt.detect_overfitting(np.asarray(self._val_hist), np.asarray(self._train_hist), cfg)
            if det:
                det.evidence["best_epoch"] = self._best_epoch
                self._report(det, t, action="stop early, restore best weights" if heal else None)
                if heal:
                    self.should_stop = True
                    self._action(t, "stop", "TM309", best_epoch=self._best_epoch)
                    self._restore_best(t)
                return
        if self._plateau_cooldown > 0:
            self._plateau_cooldown -= 1
            self._plateau_from = len(self._val_hist)
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return  # the user's scheduler already answers plateaus
        det = rt.detect_plateau(np.asarray(self._val_hist[self._plateau_from:]), cfg)
        if det:
            det.evidence["monitored"] = "val_loss" if has_val else "train_loss"
            self._report(det, t, action="lr x0.1" if heal else None)
            self._plateau_from = len(self._val_hist)
            self._plateau_cooldown = cfg.plateau_cooldown
            if heal:
                self._scale_lr(t, cfg.plateau_lr_factor, "TM308")

    def _restore_best(self, t: int) -> None:
        if self._best_weights is None:
            return
        self.model.load_state_dict(self._best_weights)
        self._action(t, "restore-best", "TM309", epoch=self._best_epoch)
        self.console.line(f"restored the weights of epoch {self._best_epoch}", "warning")

    # ------------------------------------------------------------------------------------------------
    # bookkeeping
    # ------------------------------------------------------------------------------------------------
    def report(self, code: str, message: str, *, step: int | None = None, evidence: dict[str, Any] | None = None,
               action: str | None = None, key: str | None = None) -> Finding:
        """Add a finding from outside the run-time detectors (forensics, pre-flight, callbacks)."""
        det = rt.Detection(code, message, dict(evidence or {}))
        return self._report(det, self.step_count if step is None else step, action=action, key=key)

    def record_action(self, action: str, reason: str, *, step: int | None = None, **detail: Any) -> None:
        """Record an action taken on the run (quarantine, checkpoint, ...) as an event."""
        self._action(self.step_count if step is None else step, action, reason, **detail)

    def _report(self, det: rt.Detection, t: int, action: str | None = None, key: str | None = None) -> Finding:
        finding = Finding(code=det.code, message=det.message, step=t, epoch=self.epoch,
                          evidence=dict(det.evidence), action=action)
        stored, new = self.log.add(finding, key=key)
        if new:
            self._event({"type": "finding", "step": t, "epoch": self.epoch, "code": det.code,
                         "severity": stored.severity, "message": det.message})
            msg = f"{det.code} {stored.name} at step {t}: {det.message}"
            if action:
                msg += f" -> {action}"
            self.console.line(msg, stored.severity or "info", key=key or det.code)
        else:
            self.console.line("", key=key or det.code)
        return stored

    def _loss_hooks(self, t: int, loss: torch.Tensor, batch: Any) -> torch.Tensor:
        """``on_loss``: a callback may return a replacement loss it has already backpropagated."""
        for cb in list(self.callbacks):
            hook = getattr(cb, "on_loss", None)
            if hook is None:
                continue
            try:
                new = hook(self, t, loss, batch)
            except Exception as exc:
                self.callbacks.remove(cb)
                self._disable(f"callback {getattr(cb, 'name', type(cb).__name__)}.on_loss", exc)
                continue
            if new is not None:
                loss = new
        return loss

    def _call(self, hook: str, *args: Any) -> None:
        for cb in list(self.callbacks):
            try:
                getattr(cb, hook)(*args)
            except Exception as exc:
                self.callbacks.remove(cb)
                self._disable(f"callback {getattr(cb, 'name', type(cb).__name__)}.{hook}", exc)

    def _action(self, t: int, action: str, reason: str, **detail: Any) -> None:
        self._event({"type": "action", "step": t, "epoch": self.epoch, "action": action, "reason": reason,
                     **detail})

    def _event(self, event: dict[str, Any]) -> None:
        if len(self.events) == self.events.maxlen:
            self.events_dropped += 1
        self.events.append(event)

    def _record_sample(self, t: int, sig: StepSignals) -> None:
        if t % self.history.stride == 0:
            self.history.offer(t, sig.loss, sig.grad_norm, self.lr)
        if t % self.layer_history.stride == 0:
            self.layer_history.offer(t, list(sig.norms))

    def _disable(self, check: str, exc: BaseException) -> None:
        """A failing check switches itself off and is reported; training goes on."""
        if check in self._disabled:
            return
        self._disabled.add(check)
        det = rt.Detection(CHECK_FAILED.code, f"{check} raised {type(exc).__name__}: {exc}; disabled",
                           {"check": check, "exception": repr(exc)})
        self._report(det, self.step_count)

    def _guard(self, check: str, fn) -> None:
        try:
            fn()
        except Exception as exc:
            self._disable(check, exc)


def _unscale(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as exc:  # the user already unscaled this step (e.g. to clip): fine
        if "already been called" not in str(exc):
            raise


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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


def _to_float(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"end_epoch() needs scalar values, got a tensor of shape {tuple(x.shape)}")
        return float(x.detach().item())
    return float(x)


def _monitor_state(mon: Monitor) -> dict[str, Any]:
    state = {k: (v.state_dict() if isinstance(v, Ring) else v) for k, v in vars(mon).items()}
    return state


def _monitor_from_state(state: dict[str, Any], cfg: Thresholds) -> Monitor:
    mon = Monitor(cfg)
    for k, v in state.items():
        cur = getattr(mon, k, None)
        if isinstance(cur, Ring):
            cur.load_state_dict(v)
        else:
            setattr(mon, k, copy.deepcopy(v))
    return mon


__all__ = ["Medic", "Thresholds", "get_rule"]

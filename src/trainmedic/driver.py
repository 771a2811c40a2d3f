"""The step protocol: one object per optimizer that every front end drives the same way.

    verdict = driver.before_step(loss, batch)   # gradients are ready, the optimizer step is next
    if verdict.proceed:
        optimizer.step()                        # the front end's business (Medic, or the user's script)
    driver.after_step()                         # always: finishes the step (snapshots, sampling, callbacks)
    ...
    driver.end_epoch(val_loss=...)              # at each evaluation

``before_step`` collects the step's signals in one device-to-host copy (:mod:`trainmedic.signals`), asks the
engine for a verdict (:mod:`trainmedic.engine`: detectors and heal policy) and has the actuator carry out
what must precede the step (:mod:`trainmedic.heal.actions`: skip, clip, roll back, change the lr).
``after_step`` carries out what must follow it. :class:`~trainmedic.medic.Medic` is this protocol with the
optimizer step taken for a hand-written loop; the hook-driven front ends (``trainmedic run``, the
Lightning and Hugging Face callbacks, :mod:`trainmedic.instrument.hooked`) call it from the optimizer's
step hooks and leave the step to the script or framework.

Callbacks (:class:`~trainmedic.callbacks.MedicCallback`: pre-flight, forensics, checkpoints, TensorBoard,
your own) receive the driver. Anything that raises inside trainmedic is switched off and reported as
TM901; the training loop never sees the exception.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from trainmedic.callbacks import MedicCallback
from trainmedic.config import Thresholds
from trainmedic.engine import Engine, event_stream
from trainmedic.findings import Finding
from trainmedic.heal.actions import Actuator, first_lr
from trainmedic.observe.live import LiveChecks, Observed, due, observing
from trainmedic.report.console import MedicConsole
from trainmedic.report.live import ConsoleSink
from trainmedic.signals.activations import ActivationSampler
from trainmedic.signals.collect import Collector
from trainmedic.signals.stepping import Stepping, raises_by_design
from trainmedic.verdict import EpochVerdict, StepVerdict


def watched_parameters(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[Any], list[str]]:
    """The optimizer's trainable parameters, in the model's order (first layer first) where known."""
    names = {id(p): n for n, p in model.named_parameters()}
    opt_params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    opt_ids = {id(p) for p in opt_params}
    ordered = [p for p in model.parameters() if id(p) in opt_ids]
    seen = {id(q) for q in ordered}
    ordered += [p for p in opt_params if id(p) not in seen]
    return ordered, [names.get(id(p), f"param{i}") for i, p in enumerate(ordered)]


class Driver:
    """Binds one engine to one model and optimizer. See the module docstring for the protocol.

    Args:
        model, optimizer: what is trained; ``scheduler`` and ``scaler`` are snapshotted with them.
        mode: ``"watch"`` or ``"heal"``.
        thresholds: a :class:`~trainmedic.config.Thresholds` or a dict of overrides.
        console: print findings and actions on stderr; ``status`` also a live status line (terminal only).
        restore_best: keep the best evaluation's weights for heal's early stop (default: on in heal mode).
        callbacks: :class:`~trainmedic.callbacks.MedicCallback` objects.
        loss_fn: ``loss_fn(model(inputs), target)``, for pre-flight and forensics replays of a batch.
        preflight, forensics: attach the wiring checks and the non-finite forensics.
        name: how this driver is named in findings when a run has several (a GAN's two optimizers).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, mode: str = "watch",
                 thresholds: Thresholds | dict[str, Any] | None = None, scheduler: Any = None, scaler: Any = None,
                 console: bool = True, status: bool = True, restore_best: bool | None = None,
                 callbacks: Iterable[MedicCallback] = (), loss_fn: Any = None, preflight: bool = True,
                 forensics: bool = True, name: str | None = None, observes_itself: bool = True) -> None:
        if isinstance(thresholds, dict):
            thresholds = Thresholds().replace(**thresholds)
        self.cfg: Thresholds = thresholds or Thresholds()
        self.mode = mode
        self.name = name
        params, names = watched_parameters(model, optimizer)
        weights = [i for i, p in enumerate(params) if p.dim() >= 2]
        first, last = (weights[0], weights[-1]) if weights else (0, max(len(params) - 1, 0))
        self.engine = Engine(self.cfg, mode, names, first, last,
                             restore_best=(mode == "heal") if restore_best is None else restore_best,
                             stepping=Stepping.of(optimizer))
        self.collector = Collector(params, names)
        self.actuator = Actuator(model, optimizer, scheduler, scaler)
        self.activations = ActivationSampler(model)
        self.live = LiveChecks(model, optimizer)
        self.observes_itself = observes_itself  # no front end hands over what it saw of a step (Medic)
        self.console = MedicConsole(enabled=console)
        self.status_line = status
        self.engine.subscribe(ConsoleSink(self.console))
        self.loss_fn = loss_fn
        self.last_batch: Any = None
        self.quarantined: set[Any] = set()  # TM313 rows left out in heal mode: dataset indices or content hashes
        self.callbacks: list[MedicCallback] = []
        self.verdict: StepVerdict | None = None  # the verdict of the step in progress
        self.clock_start = time.monotonic()  # for the run's speed in the report
        if preflight or forensics:  # pre-flight and forensics plug in as callbacks
            from trainmedic.heal.forensics import Forensics
            from trainmedic.preflight import PreflightCallback

            for cb in (PreflightCallback() if preflight else None, Forensics() if forensics else None):
                if cb is not None:
                    self.add_callback(cb)
        if loss_fn is not None:
            from trainmedic.heal.probe_replay import add_probe_replay
            from trainmedic.heal.rate_audit import add_rate_audit

            add_rate_audit(self)  # TM343: adaptive optimizers; in watch mode it only reports (heal/rate_audit.py)
            add_probe_replay(self)  # the rate after a probe, for plain SGD (heal/probe_replay.py)
        for cb in callbacks:
            self.add_callback(cb)
        if observes_itself:
            self.guard("live-checks", self.live.keep_inputs)
            self.guard("live-checks", self.live.arm)

    # -- the objects --------------------------------------------------------------------------------
    model = property(lambda self: self.actuator.model)
    optimizer = property(lambda self: self.actuator.optimizer)

    @property
    def scheduler(self) -> Any:
        return self.actuator.scheduler

    @scheduler.setter
    def scheduler(self, value: Any) -> None:
        self.actuator.scheduler = value

    @property
    def scaler(self) -> Any:
        return self.actuator.scaler

    @scaler.setter
    def scaler(self, value: Any) -> None:
        self.actuator.scaler = value

    @property
    def lr(self) -> float:
        return first_lr(self.optimizer)

    # -- the record (the engine's) ------------------------------------------------------------------
    findings = property(lambda self: self.engine.findings, doc="One finding per distinct problem, in order.")
    events = property(lambda self: self.engine.events)
    events_dropped = property(lambda self: self.engine.events_dropped)
    history = property(lambda self: self.engine.history)
    epochs = property(lambda self: self.engine.epochs)
    monitor = property(lambda self: self.engine.monitor)
    step_count = property(lambda self: self.engine.step_count)
    epoch = property(lambda self: self.engine.epoch)
    best_epoch = property(lambda self: self.engine.monitor.best_epoch)
    smoothed_loss = property(lambda self: self.engine.window.smoothed)

    @property
    def should_stop(self) -> bool:
        return self.engine.should_stop

    @property
    def probe_steps(self) -> int:
        """Steps heal spent probing learning rates after rollbacks (bounded by ``max_probes * probe_steps``)."""
        return self.engine.policy.steer.probe_steps

    def report(self, code: str, message: str, *, step: int | None = None, evidence: dict[str, Any] | None = None,
               action: str | None = None, key: str | None = None) -> Finding:
        """Add a finding from outside the run-time detectors (forensics, pre-flight, callbacks)."""
        return self.engine.report(code, message, step=step, evidence=evidence, action=action, key=key)

    def record_action(self, action: str, reason: str, *, step: int | None = None, **detail: Any) -> None:
        """Record an action taken on the run (quarantine, checkpoint, ...) as an event."""
        self.engine.record_action(action, reason, step=step, **detail)

    def step_aside(self, check: str, why: str, *, step: int | None = None, **evidence: Any) -> None:
        """Switch ``check`` off for the whole run because it cannot run on this setup, and say so (TM904, info).

        Unlike a check that failed (TM901), nothing went wrong: a front end knows the check would change
        what the script sees, e.g. ``"activations"`` (TM311 sampling) on a compiled model, whose module
        hooks would make it recompile. ``check`` is a name the engine and driver honour in
        ``engine.disabled`` (``"activations"``, ``"update-ratio"``, ``"snapshots"``...) or, for a part of the
        front end itself, any name it tests before acting. ``step``: where the finding is dated (default: now).
        """
        if check in self.engine.disabled:
            return
        self.engine.disabled.add(check)
        if check == "activations":
            self.activations.disarm()
        from trainmedic.rules.internal import CHECK_SKIPPED

        self.report(CHECK_SKIPPED.code, f"{check} skipped: {why}", step=step,
                    evidence={"check": check, "why": why, **evidence}, key=f"TM904:{check}")

    def add_callback(self, callback: MedicCallback) -> None:
        try:
            callback.on_attach(self)
        except Exception as exc:
            self.engine.disable(f"callback {getattr(callback, 'name', type(callback).__name__)}.on_attach", exc)
            return
        self.callbacks.append(callback)

    # -- the step protocol ----------------------------------------------------------------------------
    @property
    def observing_next(self) -> bool:
        """The next step is one the live checks look at: a front end reads the loss graph before backward."""
        return observing(self.step_count)

    def before_step(self, loss: torch.Tensor, batch: Any = None, observed: Observed | None = None) -> StepVerdict:
        """Judge the step whose gradients are ready and do what must precede it; ``.proceed`` says whether
        the optimizer step may run. ``observed``: what a front end saw of the step before its backward."""
        t = self.step_count
        self.last_batch = batch
        loss = self._loss_hooks(t, loss, batch)  # e.g. forensics recomputes a batch without quarantined rows
        self.call("on_before_step", self, t, loss, batch)
        if due(t):
            replayed = self.loss_fn is not None and batch is not None  # pre-flight judged the loss itself
            self.guard("live-checks", lambda: self.live.check(t, loss, batch, observed, self.report,
                                                              wiring=not replayed))
        elif observing(t):
            self.guard("live-checks", lambda: self.live.sample_level(t, loss, batch, observed))
        for sample in self.live.take_levels():  # the targets' constant-prediction level (signals/levels.py)
            self.engine.levels.add(sample)
        if not self.live.order.done:
            self.guard("batch order", lambda: self.live.see_order(t, batch, observed, self.report))
        if self.activations.armed:
            self.guard("activations", lambda: self.engine.observe_activations(self.activations.collect()))
        verdict = None
        if "signals" not in self.engine.disabled:
            try:
                if not self.collector.probing:
                    self.collector.attach_probe()
                sig = self.collector.collect(loss)
                if not sig.loss_finite or (not sig.grads_finite and self.scaler is None):
                    # the rows that made it non-finite are the cause: named before the engine's TM301/TM302
                    self.guard("live-checks", lambda: self.live.nonfinite(t, batch, observed, self.report))
                scale = float(self.scaler.get_scale()) if self.scaler is not None else None
                verdict = self.engine.step(sig, self.lr, scale=scale, has_scaler=self.scaler is not None,
                                           planned=raises_by_design(self.scheduler))
            except Exception as exc:  # instrumentation must never break the user's loop
                self.engine.disable("signals", exc)
        self.collector.reset_backwards()
        if verdict is None:
            verdict = StepVerdict(step=t, finite=False)
            self.engine.count_unjudged_step()
        self.verdict = verdict
        self.guard("actions", lambda: self._act_before(verdict, batch))
        return verdict

    def _act_before(self, v: StepVerdict, batch: Any) -> None:
        act = self.actuator
        if v.snapshot_now is not None:
            self.snapshot(v.snapshot_now)
        if v.nonfinite is not None:
            self.call("on_nonfinite", self, v.step, v.signals, v.nonfinite, batch)
        if v.zero_grads:
            act.drop_gradients()
        if v.rollback is not None:
            act.rollback(v.rollback)
            if v.keep_snapshots is not None:
                act.keep_snapshots(v.keep_snapshots)
            self.call("on_rollback", self, v.step, v.rollback.to_step)
        elif v.clip_to is not None:
            act.clip(v.clip_to, v.grad_norm)
        act.scale_lr(v.lr_multiplier)
        if v.proceed and v.sample_update:
            self.guard("update-ratio", self.collector.before_update)

    def after_step(self) -> None:
        """The optimizer step ran (or was skipped as the verdict said): finish the step."""
        v, self.verdict = self.verdict, None
        if v is None:
            return
        if v.proceed and v.sample_update:
            self.guard("update-ratio", self.collector.after_update)
        if v.proceed and v.zero_after_step:
            self.optimizer.zero_grad(set_to_none=True)
        if v.snapshot_after is not None:
            self.snapshot(v.snapshot_after)
        if v.sample_activations:
            self.guard("activations", self.activations.arm)
        if self.observes_itself and observing(self.step_count):
            self.guard("live-checks", self.live.arm)
        self.call("on_step_end", self, v.step, v.applied)
        if v.finite and self.status_line:
            self.console.status(v.step, v.loss, v.grad_norm, self.lr, self.mode)

    def snapshot(self, step: int) -> None:
        """Take a heal snapshot labelled ``step`` now (the engine catalogues it, the actuator keeps it)."""
        try:
            lr = self.actuator.take_snapshot(step)
        except Exception as exc:
            self.engine.disable("snapshots", exc)
            return
        self.actuator.keep_snapshots(self.engine.snapshot_taken(step, lr))

    def end_epoch(self, val_loss: float | torch.Tensor | None = None, val_metric: float | torch.Tensor | None = None,
                  *, higher_is_better: bool = True) -> EpochVerdict:
        """Close an epoch: plateau, overfitting, early stopping, best weights."""
        verdict = self.judge_epoch(val_loss, val_metric, higher_is_better=higher_is_better)
        self.finish_epoch(verdict)
        return verdict

    def judge_epoch(self, val_loss: Any = None, val_metric: Any = None, *, higher_is_better: bool = True,
                    plateau_scheduler: bool = False) -> EpochVerdict:
        plateau_scheduler = plateau_scheduler or isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        v = self.engine.end_epoch(_to_float(val_loss), _to_float(val_metric), higher_is_better=higher_is_better,
                                  lr=self.lr, plateau_scheduler=plateau_scheduler)
        self.guard("live-checks", lambda: self.live.epoch_end(max(self.step_count - 1, 0), self.report))
        act = self.actuator
        if v.save_best:
            self.guard("best-weights", act.save_best)
        if v.restore_best is not None:
            self.guard("best-weights", act.restore_best)
        act.scale_lr(v.lr_multiplier)
        return v

    def rate_too_high(self, code: str, factor: float, message: str, evidence: dict[str, Any], **detail: Any) -> bool:
        """A check outside the detectors (the rate audit) found the rate too high: report ``code`` with what
        heal does (:mod:`trainmedic.heal.rate_answer`), a restart at the next step or the rate x ``factor``
        now (an ``lr-change`` action with ``detail``). True when the rate was cut now."""
        multiplier = self.engine.rate_too_high(code, factor, self.lr, message, evidence, **detail)
        self.actuator.scale_lr(multiplier)
        return multiplier != 1.0

    def finish_epoch(self, v: EpochVerdict) -> None:
        self.call("on_epoch_end", self, v.epoch, v.record)
        self.engine.advance_epoch()

    # -- callbacks ------------------------------------------------------------------------------------
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
                self.engine.disable(f"callback {getattr(cb, 'name', type(cb).__name__)}.on_loss", exc)
                continue
            if new is not None:
                loss = new
        return loss

    def call(self, hook: str, *args: Any) -> None:
        for cb in list(self.callbacks):
            try:
                getattr(cb, hook)(*args)
            except Exception as exc:
                self.callbacks.remove(cb)
                self.engine.disable(f"callback {getattr(cb, 'name', type(cb).__name__)}.{hook}", exc)

    def guard(self, check: str, fn: Any) -> None:
        if check in self.engine.disabled:
            return
        try:
            fn()
        except Exception as exc:
            self.engine.disable(check, exc)

    # -- output and state -----------------------------------------------------------------------------
    def event_stream(self, meta: dict[str, Any] | None = None) -> Iterable[dict[str, Any]]:
        run: dict[str, Any] = {}
        try:
            run = run_meta(self)
        except Exception as exc:  # an exotic model or optimizer: the report does without
            self.engine.disable("run-metadata", exc)
        return event_stream(self.engine, {"run": run, **(meta or {})})

    def save_report(self, out_dir: str | os.PathLike[str], html: bool = True) -> Path:
        """Write ``findings.json``, ``events.jsonl`` and ``report.html`` into ``out_dir`` (rank 0 only)."""
        out = Path(out_dir)
        if _rank() != 0:
            return out
        from trainmedic.report.files import write_run

        write_run(out, [self], html=html)
        self.call("on_save", self, out)
        self.console.summary(self.findings, self.step_count, self.mode, out)  # as `trainmedic run` prints it
        return out

    def close(self) -> None:
        self.collector.detach()
        self.activations.disarm()
        self.live.close()
        self.console.close()

    def state_dict(self, snapshots: bool = True) -> dict[str, Any]:
        """The driver's whole state, the torch objects' own states aside: the engine's record and running
        statistics, heal's snapshots and best weights, the pending update sample, the quarantined rows."""
        return {"engine": self.engine.state_dict(), "actuator": self.actuator.state_dict(snapshots),
                "collector": self.collector.state_dict(), "quarantined": sorted(self.quarantined, key=repr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.load_state_dict(state["engine"])
        self.actuator.load_state_dict(state["actuator"])
        self.collector.load_state_dict(state.get("collector", {}))
        self.quarantined = set(state.get("quarantined", ()))
        if "snapshots" not in state["actuator"] and self.mode == "heal":
            # Saved without the rollback snapshots: the restored state is where a rollback may return to.
            self.engine.forget_snapshots()
            self.snapshot(self.step_count)


def run_meta(driver: Driver) -> dict[str, Any]:
    """What the report shows about the run: model size, optimizer and settings, torch, device, speed."""
    params = list(driver.model.parameters())
    group = {k: v for k, v in driver.optimizer.param_groups[0].items() if k != "params"}
    wall = time.monotonic() - driver.clock_start
    return {"model_parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "optimizer": {"name": type(driver.optimizer).__name__,
                          "hyperparameters": {k: v for k, v in group.items()
                                              if isinstance(v, (int, float, str, bool, tuple, type(None)))}},
            "torch": torch.__version__, "device": str(params[0].device) if params else "cpu",
            "wall_time_s": round(wall, 3), "steps_per_s": round(driver.step_count / wall, 3) if wall > 0 else None}


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _to_float(x: Any) -> float | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"end_epoch() needs scalar values, got a tensor of shape {tuple(x.shape)}")
        return float(x.detach().float().item())
    return float(x)


__all__ = ["Driver", "run_meta", "watched_parameters"]

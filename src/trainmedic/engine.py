"""The engine: a step's signals (or an evaluation) in, a verdict out. No torch objects inside.

    signals -> detectors -> verdict -> policy -> actions -> sinks

The engine updates the running statistics (:class:`~trainmedic.signals.monitor.Monitor`), runs the
detectors registered for each cadence (:mod:`trainmedic.rules.detectors`), records what they find in the
findings log, lets the heal policy (:class:`~trainmedic.heal.policy.Policy`) request actions on the
verdict, and publishes every finding and action as an event to its subscribers (console, TensorBoard,
the files). It owns the findings log, the event stream and the downsampled curves, and has one complete
``state_dict()``. Carrying out a verdict is the actions layer's business (:mod:`trainmedic.heal.actions`).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from trainmedic import __version__
from trainmedic.config import Thresholds
from trainmedic.engine_phase import PhaseEnd
from trainmedic.findings import Finding, FindingLog
from trainmedic.heal.policy import Policy
from trainmedic.rules.detectors import Cadence, Detection, Detector, Observation, detectors_for
from trainmedic.rules.internal import CHECK_FAILED
from trainmedic.rules.learning import RateWatch
from trainmedic.rules.runtime import HEAL_EXHAUSTED
from trainmedic.signals.history import Downsampled
from trainmedic.signals.levels import TargetLevels
from trainmedic.signals.monitor import MAX_EVALUATIONS, Monitor, StepWindow
from trainmedic.signals.step import StepSignals
from trainmedic.signals.stepping import UNKNOWN, Stepping
from trainmedic.verdict import EpochVerdict, StepVerdict

MAX_EVENTS = 5000

#: A subscriber sees every event as it happens (``new`` is False for a repeat of a known finding, which
#: is counted in the log but not stored again in the event stream).
Subscriber = Callable[[dict[str, Any], bool], None]


def _monitored(val_loss: float | None, val_metric: float | None, train: float,
               higher_is_better: bool) -> tuple[float | None, str]:
    """The value an evaluation's rules judge (lower is better: a higher-is-better metric negated) and what it
    is (:attr:`Monitor.monitored_as`, so that the findings word it as the user logged it)."""
    if val_loss is not None:
        return val_loss, "val_loss"
    if val_metric is None:
        return train, "train_loss"
    return (-val_metric, "-val_metric") if higher_is_better else (val_metric, "val_metric")


class Engine(PhaseEnd):
    """Turns signals into verdicts and keeps the record of the run (the end of a phase: :class:`PhaseEnd`).

    Args:
        cfg: the thresholds.
        mode: ``"watch"`` or ``"heal"``.
        layers: names of the watched parameters, aligned with ``StepSignals.norms``.
        first, last: indices of the first and last weight layers in ``layers`` (vanishing gradients).
        restore_best: keep the best evaluation's weights (heal's early stop restores them).
        stepping: what kind of steps the optimizer takes (:mod:`trainmedic.signals.stepping`).
    """

    def __init__(self, cfg: Thresholds, mode: str = "watch", layers: Sequence[str] = (), first: int = 0,
                 last: int = 0, restore_best: bool = False, stepping: Stepping = UNKNOWN) -> None:
        self.cfg = cfg
        self.policy = Policy(mode, cfg, stepping.direct, stepping.momentum)
        self.memory = stepping.memory  # steps one gradient keeps moving the weights (TM303's echo)
        self.mode = mode
        self.layers = list(layers)
        self.first, self.last = first, last
        self.restore_best = restore_best
        self.monitor = Monitor(cfg)
        self.step_count, self.epoch, self.should_stop = 0, 0, False
        self.log = FindingLog()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.events_dropped = 0
        self.history = Downsampled(("loss", "grad_norm", "lr"))
        self.layer_history = Downsampled(("norms",), capacity=512)
        self.epochs: list[dict[str, Any]] = []
        self.disabled: set[str] = set()
        self.best_saved = False  # the actuator holds the best evaluation's weights
        self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._subscribers: list[Subscriber] = []
        self._initial_window: StepWindow | None = None  # the window before step 0, for the initial snapshot
        self.rates = RateWatch()  # the learning rate from step to step: raises by the loop (TM319), steadiness
        self.levels = TargetLevels()  # the targets seen: the constant-prediction level (TM317, TM205 start)
        self.ended_at: int | None = None  # the step count when its phase ended (PhaseEnd; not state: transient)

    # ------------------------------------------------------------------------------------------------
    # a training step
    # ------------------------------------------------------------------------------------------------
    def step(self, sig: StepSignals, lr: float, *, scale: float | None = None, has_scaler: bool = False,
             planned: bool = False) -> StepVerdict:
        """Judge one step whose gradients are ready (``planned``: a schedule raises the rate by design, no TM319)."""
        t = self.step_count
        self.step_count += 1
        mon, cfg, window = self.monitor, self.cfg, self.monitor.step_window
        v = StepVerdict(step=t, grad_norm=sig.grad_norm, loss=sig.loss, signals=sig,
                        zero_after_step=self.policy.zero_after_step)
        if "snapshots" not in self.disabled:
            v.snapshot_now = self.policy.initial_snapshot(t)
            if v.snapshot_now is not None:
                self._initial_window = window.copy()  # the state before this step
        if self.policy.probing or self.policy.rate_restart is not None:
            return self._probe_step(t, sig, v, lr)
        self.rates.observe(t, lr, window, mon.warm, cfg.raise_factor, cfg.raise_window, planned)
        self.policy.pace(v, lr)
        v.sample_activations = (t + 1) % cfg.activation_every == 0 and "activations" not in self.disabled
        obs = Observation(t, cfg, mon, sig, self.layers, scale, has_scaler, rates=self.rates, levels=self.levels,
                          memory=self.memory)
        mon.observe_update(sig.update_norm, sig.weight_norm)
        mon.players = sig.players
        mon.observe_stale(sig.stale)
        self._run(Cadence.EVERY, obs, v, lr)

        if not (sig.loss_finite and sig.grads_finite):
            v.finite = False
            mon.observe_nonfinite(t)
            self._record_sample(t, sig, lr)
            if has_scaler and sig.loss_finite:
                # Mixed precision: overflowing scaled gradients are the scaler's business; it skips the step
                # and lowers its scale. Only a long run of skips is a problem (TM314).
                mon.amp_skips += 1
                v.applied = False
            self._run(Cadence.NONFINITE, obs, v, lr)
            if self.policy.heal and mon.consecutive_nonfinite >= cfg.nonfinite_rollback_after:
                mon.consecutive_nonfinite = 0
            return self._settle(v, lr)

        v.sample_update = t % cfg.ratio_every == 0 and "update-ratio" not in self.disabled
        first = sig.norms[self.first] if sig.norms else 0.0
        last = sig.norms[self.last] if sig.norms else 0.0
        mon.observe_step(t, sig.loss, sig.grad_norm, first, last)
        self._run(Cadence.STEP, obs, v, lr)
        if t % cfg.check_every == 0:
            window.refresh(t, cfg)
            self._run(Cadence.WINDOW, obs, v, lr)
            if v.proceed and t % cfg.slow_check_every == 0:
                self._run(Cadence.SLOW, obs, v, lr)
        self._record_sample(t, sig, lr)
        if v.proceed and "snapshots" not in self.disabled:
            v.snapshot_after = self.policy.snapshot_due(t, window, self.rates.steady, self.rates.pending)
        return self._settle(v, lr)

    def _probe_step(self, t: int, sig: StepSignals, v: StepVerdict, lr: float) -> StepVerdict:
        """A step of heal's learning-rate probe: the probe reads its loss and sets its rate. The detectors
        do not judge it (its rate is deliberately off), and its loss joins no curve but the report's. The step
        after TM343's evaluation starts the probe heal decided on there (heal/rate_answer.py)."""
        v.finite = sig.loss_finite and sig.grads_finite
        self._record_sample(t, sig, lr)
        if self.policy.rate_restart is not None:
            self.policy.restart(v, self.monitor.step_window)
        else:
            self.policy.probe_step(v, sig.loss if v.finite else math.inf, lr)
        return self._settle(v, lr)

    def _settle(self, v: StepVerdict, lr: float = math.nan) -> StepVerdict:
        """Publish the verdict's actions, restore the window of a rollback, report an exhausted budget."""
        if v.rollback is not None:
            entry = self.policy.entry(v.rollback.to_step)
            self.monitor.step_window.restore(entry.window)
            self.monitor.step_window.last_anomaly = v.step
            self.rates.restart()
        self.rates.settle((v.rollback.lr_after if v.rollback is not None else lr) * v.lr_multiplier)
        for action in v.actions:
            self._event({"type": "action", "step": v.step, "epoch": self.epoch, **action})
        if v.exhausted:
            self._exhausted(v.step, v.exhausted)
            v.stop = True
        return v

    def count_unjudged_step(self) -> None:
        """A step went by without signals (their collection failed and was disabled)."""
        self.step_count += 1

    def forget_snapshots(self) -> None:
        self.policy.forget_snapshots()

    def snapshot_taken(self, step: int, lr: float) -> frozenset[int]:
        """The actuator took the snapshot labelled ``step``; returns the snapshot steps to keep."""
        window, self._initial_window = self._initial_window, None
        steady = self.rates.steady >= self.cfg.snapshot_every
        return self.policy.snapshot_taken(step, window or self.monitor.step_window.copy(), lr, steady)

    def observe_activations(self, dead: dict[str, float]) -> None:
        """Shares of never-positive units per ReLU layer, from a sampled training forward pass (TM311)."""
        mon = self.monitor
        mon.observe_activations(dead, self.cfg.dead_relu_fraction)
        obs = Observation(max(self.step_count - 1, 0), self.cfg, mon, activations=dict(dead))
        self._run(Cadence.ACTIVATIONS, obs, StepVerdict(step=obs.step), math.nan)

    # ------------------------------------------------------------------------------------------------
    # an evaluation
    # ------------------------------------------------------------------------------------------------
    def end_epoch(self, val_loss: float | None = None, val_metric: float | None = None, *,
                  higher_is_better: bool = True, lr: float = math.nan, plateau_scheduler: bool = False
                  ) -> EpochVerdict:
        """Close an epoch: plateau and overfitting, the best evaluation, early stopping."""
        mon = self.monitor
        train = mon.close_epoch_loss()
        record = {"type": "epoch", "epoch": self.epoch, "step": self.step_count, "train_loss": train,
                  "val_loss": val_loss, "val_metric": val_metric, "lr": lr}
        self.epochs.append(record)
        if len(self.epochs) > 2 * MAX_EVALUATIONS:
            self.epochs = self.epochs[::2]  # a very long run keeps every other epoch record for the report
        self._event(record)
        monitored, kind = _monitored(val_loss, val_metric, train, higher_is_better)
        v = EpochVerdict(epoch=self.epoch, record=record, monitored=monitored)
        if monitored is None or not math.isfinite(monitored) or "epoch-checks" in self.disabled:
            return v
        try:
            if mon.plateau_cooldown > 0:
                mon.plateau_cooldown -= 1
                mon.plateau_from = len(mon.val_hist) + 1
            has_val = val_loss is not None or val_metric is not None
            improved = mon.observe_evaluation(monitored, train, self.epoch, validated=has_val, kind=kind)
            v.save_best = improved and self.restore_best
            self.best_saved = self.best_saved or v.save_best
            obs = Observation(self.step_count, self.cfg, mon, has_val=has_val, plateau_scheduler=plateau_scheduler)
            for d in self._due(Cadence.EPOCH):
                dets = self._judge(d, obs)
                for det in dets or ():
                    action = self.policy.respond_epoch(det, v, mon.best_epoch, lr, self.best_saved,
                                                       best_value=mon.best_val, value=monitored)
                    self._fire(d, det, obs, action)
                if dets and d.exclusive:
                    break
        except Exception as exc:
            self.disable("epoch-checks", exc)
        if v.exhausted and self.best_saved:
            self.policy.restore_on_stop(v, HEAL_EXHAUSTED.code, mon.best_epoch, mon.best_val, monitored)
        if any(a.get("action") == "lr-change" and a.get("reason") != "TM308" for a in v.actions):
            # a rate heal changed at an evaluation (TM309's cut) starts a new plateau window, as TM308's own does:
            # the evaluations before it were made at the old rate and, after a restore, on other weights
            mon.restart_plateau(self.cfg.plateau_cooldown)
        for action in v.actions:
            self._event({"type": "action", "step": self.step_count, "epoch": self.epoch, **action})
        if v.exhausted:
            self._exhausted(self.step_count, v.exhausted)
            v.stop = True
        self.should_stop = self.should_stop or v.stop
        return v

    def rate_too_high(self, code: str, factor: float, lr: float, message: str, evidence: dict[str, Any],
                      **detail: Any) -> float:
        """TM343 (the rate audit) at the evaluation just closed: heal restarts at the next step or cuts the rate
        now (heal/rate_answer.py); returns the multiplier to apply now. Either starts a new plateau window."""
        v = EpochVerdict(epoch=self.epoch)
        action = self.policy.rate_too_high(code, factor, v, lr, self.step_count, **detail)
        self.report(code, message, evidence=evidence, action=action)
        if v.lr_multiplier != 1.0 or self.policy.rate_restart is not None:
            self.monitor.restart_plateau(self.cfg.plateau_cooldown)
        for a in v.actions:
            self.record_action(**a)
        return v.lr_multiplier

    def advance_epoch(self) -> None:
        self.epoch += 1

    # ------------------------------------------------------------------------------------------------
    # running the detectors
    # ------------------------------------------------------------------------------------------------
    def _due(self, cadence: Cadence) -> list[Detector]:
        obs_step = self.step_count - 1
        quiet = self.monitor.step_window.quiet_until
        out = []
        for d in detectors_for(cadence):
            if d.name in self.disabled or quiet.get(d.name, -1) > obs_step:
                continue
            if d.once and d.name in self.monitor.once_done:
                continue
            if d.needs_warmup and cadence is not Cadence.EPOCH and not self.monitor.warm:
                continue
            out.append(d)
        return out

    def _judge(self, d: Detector, obs: Observation) -> list[Detection] | None:
        try:
            dets = d.run(obs)
        except Exception as exc:  # a failing detector switches itself off; the others go on
            self.disable(d.name, exc)
            return None
        if d.once and dets is not None:
            self.monitor.once_done.append(d.name)
        return dets

    def _run(self, cadence: Cadence, obs: Observation, v: StepVerdict, lr: float) -> None:
        for d in self._due(cadence):
            dets = self._judge(d, obs)
            for det in dets or ():
                action = self.policy.respond(det, v, self.monitor.step_window, lr,
                                             self.monitor.consecutive_nonfinite)
                finding = self._fire(d, det, obs, action)
                if det.code in ("TM301", "TM302"):
                    v.nonfinite = finding
            if dets and d.exclusive:
                break

    def _fire(self, d: Detector, det: Detection, obs: Observation, action: str | None) -> Finding:
        finding = self.report(det.code, det.message, step=obs.step, evidence=det.evidence, action=action,
                              key=det.key)
        window = self.monitor.step_window
        if d.anomaly:
            window.last_anomaly = obs.step
        if d.quiet is not None:
            window.quiet_until[d.name] = obs.step + d.quiet(self.cfg)
        if d.after_fire is not None:
            d.after_fire(self.monitor, obs)
        return finding

    # ------------------------------------------------------------------------------------------------
    # the record: findings, actions, events
    # ------------------------------------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def report(self, code: str, message: str, *, step: int | None = None, evidence: dict[str, Any] | None = None,
               action: str | None = None, key: str | None = None) -> Finding:
        """Record a finding (a repeat of a known one is counted in its evidence, not stored again)."""
        t = self.step_count if step is None else step
        finding = Finding(code=code, message=message, step=t, epoch=self.epoch, evidence=dict(evidence or {}),
                          action=action)
        stored, new = self.log.add(finding, key=key)
        event = {"type": "finding", "step": t, "epoch": self.epoch, "code": code, "name": stored.name,
                 "severity": stored.severity, "message": message, "action": action, "key": key or code}
        self._event(event, new)
        return stored

    def record_action(self, action: str, reason: str, *, step: int | None = None, **detail: Any) -> None:
        """Record an action taken on the run (quarantine, checkpoint, resume...) as an event."""
        self._event({"type": "action", "step": self.step_count if step is None else step, "epoch": self.epoch,
                     "action": action, "reason": reason, **detail})

    def disable(self, check: str, exc: BaseException) -> None:
        """A failing check switches itself off and is reported (TM901); training goes on."""
        if check in self.disabled:
            return
        self.disabled.add(check)
        self.report(CHECK_FAILED.code, f"{check} raised {type(exc).__name__}: {exc}; disabled",
                    evidence={"check": check, "exception": repr(exc)}, key=f"TM901:{check}")

    def _exhausted(self, t: int, why: str) -> None:
        self.should_stop = True
        self.report(HEAL_EXHAUSTED.code, f"heal stopped: {why}", step=t, evidence={"reason": why},
                    action="should_stop set")

    def _event(self, event: dict[str, Any], store: bool = True) -> None:
        if store:
            if len(self.events) == self.events.maxlen:
                self.events_dropped += 1
            self.events.append(event)
        for fn in list(self._subscribers):
            try:
                fn(event, store)
            except Exception as exc:
                self._subscribers.remove(fn)
                self.disable(f"sink {getattr(fn, '__qualname__', fn)}", exc)

    def _record_sample(self, t: int, sig: StepSignals, lr: float) -> None:
        if t % self.history.stride == 0:
            self.history.offer(t, sig.loss, sig.grad_norm, lr)
        if t % self.layer_history.stride == 0:
            self.layer_history.offer(t, list(sig.norms))

    findings = property(lambda self: self.log.as_list(), doc="One finding per distinct problem, in order.")
    window = property(lambda self: self.monitor.step_window, doc="The step window (running statistics).")

    # ------------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the engine holds; with it a fresh engine continues exactly where this one is."""
        return {
            "version": 2, "mode": self.mode, "step_count": self.step_count, "epoch": self.epoch,
            "should_stop": self.should_stop, "findings": self.log.state_dict(), "events": list(self.events),
            "events_dropped": self.events_dropped, "history": self.history.state_dict(),
            "layer_history": self.layer_history.state_dict(), "epochs": list(self.epochs),
            "monitor": self.monitor.state_dict(), "policy": self.policy.state_dict(),
            "disabled": sorted(self.disabled), "best_saved": self.best_saved, "started": self.started,
            "rates": self.rates.state_dict(), "levels": self.levels.state_dict(),
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
        self.monitor.load_state_dict(state["monitor"])
        self.policy.load_state_dict(state["policy"])
        self.disabled = set(state.get("disabled", ()))
        self.best_saved = bool(state.get("best_saved", False))
        self.started = state.get("started", self.started)
        if "rates" in state:
            self.rates.load_state_dict(state["rates"])
        self.levels.load_state_dict(state.get("levels", {}))  # absent from a checkpoint of an older version


def event_stream(engine: Engine, meta: dict[str, Any] | None = None) -> Iterable[dict[str, Any]]:
    """Everything ``events.jsonl`` holds: a meta line, the events, then the downsampled curves."""
    yield {"type": "meta", "version": 1, "trainmedic": __version__, "mode": engine.mode,
           "started": engine.started, "steps": engine.step_count, "epochs": engine.epoch,
           "events_dropped": engine.events_dropped, "layers": list(engine.layers),
           "thresholds": engine.cfg.as_dict(),
           "levels": engine.levels.summary(), **(meta or {})}
    yield from engine.events
    for row in engine.history.as_dicts():
        yield {"type": "sample", **row}
    for row in engine.layer_history.as_dicts():
        yield {"type": "layer_sample", "step": row["step"], "norms": row["norms"]}

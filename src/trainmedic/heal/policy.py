"""The heal policy: what each finding asks to be done, within budgets. Watch mode asks for nothing.

| finding | heal action |
|---|---|
| TM301, TM302 | skip the step; ``nonfinite_rollback_after`` in a row -> roll back |
| TM303 | clip the step to the running bound |
| TM305, TM306 | roll back to the last healthy snapshot, probe the learning rate |
| TM317, TM318 | roll back to the last snapshot that was learning (else the initial one), probe the rate (a) |
| TM319 | roll back to before the rate raise, probe (the rate the run trained at there is kept if it holds) |
| TM307 | learning rate x ``oscillation_lr_factor`` |
| TM308 | learning rate x ``plateau_lr_factor`` |
| TM309 | stop early, restore the best weights, report what the stop saved |
| TM310 | reset the gradients after every step from now on |
| TM343 | roll back to the initial snapshot at the next step, probe below the audited rate, warm up; or cut |

(a) A TM317 at the rate heal's own probe chose is reported, not cut again (``Steering.chose``).

A rollback is followed by a learning-rate probe (:mod:`trainmedic.heal.steering`, issue 12): the next
``probe_steps`` steps, from the restored snapshot, try rates rising exponentially over the three decades
below the rate that failed; then the snapshot is restored again and the run continues at the rate the
probe supports (:func:`~trainmedic.heal.lr_probe.choose_lr`), warming up linearly to it when the trouble
began in the first ``early_steps`` steps. For plain SGD in that case the probe's own ramp is the warmup:
heal keeps copies along it (``probe_rewind_every``) and continues from the one taken where the ramp reached
the chosen rate (the event's ``rewound_to``); with ``loss_fn=`` and batches a replay of the probe's batches
on copies may pick a lower rate than the probe's read (:mod:`trainmedic.heal.probe_replay`, the event's
``replay``; the ramp then keeps its first copy too). Without a probe (``probe_steps=0``, or ``max_probes``
spent) a rollback halves the rate, as before.

Budgets: at most ``max_rollbacks`` rollbacks, ``max_probes`` probes of ``probe_steps`` steps, and a
learning rate of at least ``min_lr``; past them the policy answers "exhausted" and the engine reports
TM316 and stops, so heal can never loop.

The policy also keeps the catalogue of heal snapshots (their step, the step window saved with them, the
learning rate in them): plain data. The tensors themselves live in :class:`~trainmedic.heal.actions.Actuator`,
which keeps exactly the steps this catalogue lists.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import DEFAULT_DECADES, ProbeStep
from trainmedic.heal.rate_answer import RateAnswer
from trainmedic.heal.steering import Steering, probe_event, thin_ramp
from trainmedic.rules.detectors import Detection
from trainmedic.rules.learning import start_level
from trainmedic.signals.monitor import StepWindow
from trainmedic.verdict import EpochVerdict, Rollback, StepVerdict

MODES = ("watch", "heal")


@dataclass
class SnapshotEntry:
    step: int
    window: StepWindow  # a copy of the step window when the snapshot was taken
    lr_factor: float  # cumulative heal lr factor in force then
    loss: float  # smoothed loss then
    lr: float | None = None  # the first group's lr held in the snapshot (reported by the actuator)
    learning: bool = False  # the smoothed loss was clearly below the run's starting level
    steady: bool = False  # the run had trained at about this rate for a snapshot interval


class Policy(RateAnswer):
    """Maps findings to requested actions on a verdict. Holds heal's budgets and snapshot catalogue (and, from
    :class:`~trainmedic.heal.rate_answer.RateAnswer`, the answer to the rate audit: restart or cut)."""

    def __init__(self, mode: str, cfg: Thresholds, direct_steps: bool = False, momentum_steps: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
        self.mode, self.heal, self.cfg = mode, mode == "heal", cfg
        self.rollbacks = 0
        self.lr_factor = 1.0  # product of every lr change heal made
        self.zero_after_step = False
        self.recent: deque[SnapshotEntry] = deque(maxlen=max(1, cfg.snapshots_kept))
        self.best: SnapshotEntry | None = None
        self.initial: SnapshotEntry | None = None  # the initial weights: kept for the whole run
        #: copies taken along a probe's ramp from the first steps: (the probe step's rate, the entry)
        self.ramp: list[tuple[float, SnapshotEntry]] = []
        self._ramp_rate = math.nan  # the rate of the probe step a ramp copy is being taken before
        self.steer = Steering(cfg, direct_steps, momentum_steps)
        self.cut_epoch: int | None = None  # the last evaluation at which heal lowered the rate (TM308, TM309)
        self.rate_restart: dict[str, Any] | None = None  # TM343's restart, due at the next step (RateAnswer)
        self._step_actions: dict[str, Callable[[Detection, StepVerdict, StepWindow, float], str]] = {
            "TM301": self._skip, "TM302": self._skip, "TM303": self._clip, "TM305": self._rollback,
            "TM306": self._rollback, "TM307": self._oscillation, "TM310": self._zero_after_step,
            "TM317": self._rollback, "TM318": self._rollback, "TM319": self._rollback,
        }

    # -- steps --------------------------------------------------------------------------------------
    def respond(self, det: Detection, verdict: StepVerdict, window: StepWindow, lr: float,
                consecutive_nonfinite: int = 0) -> str | None:
        """Request on ``verdict`` what ``det`` calls for; returns the action text for the finding."""
        act = self._step_actions.get(det.code)
        if not self.heal or act is None:
            return None
        text = act(det, verdict, window, lr)
        # Only a run of them: scattered non-finite steps are usually bad rows, which forensics quarantines
        # (a blow-up that scatters them is caught by the loss itself, TM305 also inside the warm-up).
        if det.code in ("TM301", "TM302") and consecutive_nonfinite >= self.cfg.nonfinite_rollback_after:
            text = self._rollback(det, verdict, window, lr)
        return text

    def _skip(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        v.proceed = v.applied = False
        v.zero_grads = True
        v.actions.append({"action": "skip-step", "reason": det.code, "loss": v.loss, "grad_norm": v.grad_norm})
        return "step skipped"

    def _clip(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        bound = window.clip_bound
        det.evidence["clipped_to"] = bound
        if v.grad_norm > bound:
            v.clip_to = bound
            v.actions.append({"action": "clip", "reason": det.code, "grad_norm": v.grad_norm, "clipped_to": bound})
        return f"clipped to {bound:.4g}"

    def _zero_after_step(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        if not self.zero_after_step:
            self.zero_after_step = True
            v.actions.append({"action": "zero-grad", "reason": det.code,
                              "detail": "gradients are now reset after each step"})
        v.zero_after_step = True
        return "zero gradients after each step"

    def _oscillation(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        return self._scale_lr(det.code, self.cfg.oscillation_lr_factor, v, lr)

    def _scale_lr(self, reason: str, factor: float, v: StepVerdict | EpochVerdict, lr: float) -> str:
        if self._below_min(lr * factor, v, lr):
            return f"lr x{factor:g} refused (min_lr)"
        v.lr_multiplier *= factor
        self.lr_factor *= factor
        self.steer.scale_warmup(factor)  # a warmup in progress climbs to the lower rate
        v.actions.append({"action": "lr-change", "reason": reason, "lr_before": lr, "lr_after": lr * factor})
        return f"lr x{factor:g}"

    def _rollback(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        if v.rollback is not None:  # two findings of the same step: one rollback answers both
            return f"rolled back to step {v.rollback.to_step} (see {v.rollback.reason})"
        if det.code == "TM317" and self.steer.chose(lr):  # Steering.chose: no spiral below the probe's choice
            return "not cut: heal's probe chose this rate, and the lower rates it tried learned more slowly"
        v.proceed = v.applied = False
        v.zero_grads = True
        v.clip_to = None  # the step is not applied: nothing to clip
        v.lr_multiplier = 1.0  # nor paced: the rollback sets the rate
        v.actions = [a for a in v.actions if a["action"] != "clip"]
        cfg = self.cfg
        if self.rollbacks >= cfg.max_rollbacks:
            v.exhausted = f"{self.rollbacks} rollbacks used (max_rollbacks={cfg.max_rollbacks})"
            return "roll back refused (budget)"
        # Not learning, or dead: the snapshots since the run stopped learning hold the fault too.
        entry = self._choose(det.onset, learning=det.code in ("TM317", "TM318"))
        if entry is None or entry.lr is None:
            v.exhausted = "no healthy snapshot to roll back to"
            return "roll back refused (no snapshot)"
        # A probe needs room below the failing rate: its lowest rate is DEFAULT_DECADES decades down.
        probe = self.steer.can_probe() and lr / 10**DEFAULT_DECADES >= cfg.min_lr
        if probe:
            # The rate the run trained at healthily from this snapshot, when it is below the one that failed.
            known = entry.lr if entry.steady and entry.step > 0 and entry.lr < lr / cfg.raise_factor else None
            early = entry.step == 0 or (det.onset is not None and det.onset < cfg.early_steps)
            target = self.steer.start(to_step=entry.step, ceiling=lr, known_good=known, reason=det.code,
                                      early=early, step=v.step)
        else:
            # The new rate is at most rollback_lr_factor times the rate that failed. When the rate had risen
            # since the snapshot (a schedule, a manual change), the snapshot's own rate already satisfies
            # that and is kept on the first rollback; later rollbacks lower it further.
            lr_snap = entry.lr * (self.lr_factor / entry.lr_factor)
            keep = 1.0 if self.rollbacks == 0 else cfg.rollback_lr_factor
            target = min(lr_snap * keep, cfg.rollback_lr_factor * lr)
        if self._below_min(target, v, lr):
            return "roll back refused (min_lr)"
        self._go_back(v, entry, target / entry.lr if entry.lr > 0 else 1.0, lr, target, det.code)
        if probe:
            v.actions[-1]["probe"] = f"{self.cfg.probe_steps} steps from {target:.3g} to {lr:.3g}"
            return f"roll back to step {entry.step}, probe the rate"
        return f"roll back, lr x{cfg.rollback_lr_factor:g}"

    def _go_back(self, v: StepVerdict, entry: SnapshotEntry, multiplier: float, lr: float, target: float,
                 code: str, keep_schedule: bool = False) -> None:
        """Roll back to ``entry``, every rate x ``multiplier`` (``keep_schedule``: :class:`Rollback`)."""
        self.lr_factor, self.rollbacks = entry.lr_factor * multiplier, self.rollbacks + 1
        # Snapshots taken after the chosen one may already hold the fault.
        self.recent = deque([s for s in self.recent if s.step <= entry.step], maxlen=self.recent.maxlen)
        self.best = None if self.best is not None and self.best.step > entry.step else self.best
        v.rollback = Rollback(entry.step, multiplier, lr, target, code, keep_schedule)
        v.keep_snapshots = self.kept()
        v.actions.append({"action": "rollback", "reason": code, "to_step": entry.step, "lr_before": lr,
                          "lr_after": target, "rollbacks": self.rollbacks})

    # -- the probe and the warmup ---------------------------------------------------------------------
    @property
    def probing(self) -> bool:
        return self.steer.probing

    def probe_step(self, v: StepVerdict, loss: float, lr: float) -> None:
        """A step of the probe in progress: apply it at the probe's next rate, or end the probe (restore
        the snapshot again, continue at the chosen rate, warm up to it when the run started unstable)."""
        answer = self.steer.observe(loss)
        if isinstance(answer, ProbeStep):
            if math.isfinite(loss):
                v.lr_multiplier = answer.lr / lr if lr > 0 else 1.0
                self._ramp_copy(v, answer.lr)
            else:  # a guard: the probe ends on a non-finite step (ProbeDone); never apply one
                v.proceed = v.applied = False
                v.zero_grads = True
            return
        session, choice = self.steer.finish(), answer.choice
        start = self.entry(session.to_step)
        v.proceed = v.applied = False
        v.zero_grads = True
        rate, replay = self.steer.rate_after(session, choice)  # plain SGD: a replay may lower the probe's rate
        chosen = max(rate, self.cfg.min_lr)
        warm = session.early and choice.rule != "known-good"
        entry = self._rewind_to(self.steer.rewind_rate(chosen, choice), choice.rule) if warm else None
        warm = warm and entry is None  # else the ramp warmed up to the chosen rate already: continue from there
        entry = entry or start
        first = self.steer.begin_warmup(chosen) if warm else chosen
        base = entry.lr if entry.lr else lr
        multiplier = first / base if base > 0 else 1.0
        start_base = start.lr if start.lr else lr
        self.lr_factor = start.lr_factor * chosen / start_base if start_base > 0 else self.lr_factor
        v.rollback = Rollback(entry.step, multiplier, lr, first, session.reason)
        self.ramp = [(r, e) for r, e in self.ramp if e is entry]  # the rest is dropped now
        v.keep_snapshots = self.kept()
        event = {**probe_event(session, choice, chosen, self.cfg.heal_warmup_steps if warm else 0), **replay}
        if entry is not start:
            event["rewound_to"] = entry.step  # the ramp's state at the chosen rate, not the snapshot
            if self.steer.momentum_steps:  # Steering.rewind_rate
                event["rewound_why"] = "SGD with momentum: the probe ramp's state at its lowest loss"
        v.actions.append(event)

    def _ramp_copy(self, v: StepVerdict, rate: float) -> None:
        """Along a probe from the first steps, every ``probe_rewind_every`` steps: a copy of the state before
        this step (the weights the ramp trained at rates below ``rate``).

        Plain SGD (no momentum, no running moments): its state is its weights, so the ramp's state at a rate
        is what a warmup to that rate leaves. Measured (``benchmarks/heal_rewind.py``, ``HEAL_RESULTS.md``
        "Round four"): regression, seeds 0-3, every case that moved came closer to the tuned run; for Adam it
        changed nothing: Adam keeps the restored snapshot and the linear warmup. SGD with momentum: continued
        from the copy at the chosen rate it swung both ways (round four, 0.79x to 1.95x); it keeps copies
        for :meth:`Steering.rewind_rate`'s continuation from the ramp's lowest loss instead (round seven)."""
        session, every = self.steer.session, self.cfg.probe_rewind_every
        momentum = self.steer.momentum_steps and self.cfg.probe_rewind_best
        if (session is None or not session.early or not (self.steer.direct_steps or momentum) or every <= 0
                or self.cfg.probe_rewind_keep <= 0):
            return
        i = len(session.probe.lrs) - 1
        if i > 0 and i % every == 0 and v.step not in self.kept():  # never overwrite a catalogued snapshot
            v.snapshot_now = v.step
            self._ramp_rate = rate

    def _rewind_to(self, chosen: float, rule: str) -> SnapshotEntry | None:
        """The latest ramp copy taken at or below the chosen rate (its rate the probe step's it preceded),
        when the probe read a curve (not ``known-good``, not ``no-evidence``)."""
        if rule in ("known-good", "no-evidence"):
            return None
        below = [e for r, e in self.ramp if r <= chosen * (1 + 1e-9)]
        return below[-1] if below else None

    def pace(self, v: StepVerdict, lr: float) -> None:
        """Every step outside a probe: the warmup after a probe sets this step's rate."""
        target = self.steer.pace() if self.heal else None
        if target is not None and lr > 0:
            v.lr_multiplier *= target / lr

    def _below_min(self, target: float, v: StepVerdict | EpochVerdict, lr: float) -> bool:
        if target < self.cfg.min_lr:
            v.exhausted = f"learning rate {lr:.3g} cannot go below min_lr={self.cfg.min_lr:g}"
            return True
        return False

    def _choose(self, onset: int | None, learning: bool = False) -> SnapshotEntry | None:
        by_step = {s.step: s for s in [*self.recent, self.best, self.initial] if s is not None}
        candidates = [by_step[k] for k in sorted(by_step)]
        if learning:
            candidates = [s for s in candidates if s.learning or s is self.initial] or candidates[:1]
        if not candidates:
            return None
        if onset is not None:
            before = [s for s in candidates if s.step <= onset]
            if before:
                return before[-1]
        return candidates[0]

    def entry(self, step: int) -> SnapshotEntry:
        """The catalogued snapshot labelled ``step``."""
        return next(s for s in [*self.recent, self.best, self.initial, *(e for _, e in self.ramp)]
                    if s is not None and s.step == step)

    # -- snapshots ------------------------------------------------------------------------------------
    def initial_snapshot(self, step: int) -> int | None:
        """Heal keeps the initial weights: always a valid place to return to."""
        return step if self.heal and step == 0 else None

    def snapshot_due(self, step: int, window: StepWindow, steady: int = 1 << 30, raise_pending: bool = False
                     ) -> int | None:
        """After step ``step`` is applied: a snapshot labelled ``step + 1`` when the run is healthy, has
        trained at its current rate for a snapshot interval (``steady`` steps), and no probe, warmup or
        judgement of a rate raise is under way - so that a rollback never lands on a rate that failed."""
        if (self.heal and (step + 1) % self.cfg.snapshot_every == 0 and window.healthy(step, self.cfg)
                and not self.steer.probing and self.steer.warm is None and not raise_pending
                and steady >= self.cfg.snapshot_every):
            return step + 1
        return None

    def snapshot_taken(self, step: int, window: StepWindow, lr: float, steady: bool = False) -> frozenset[int]:
        """Catalogue a snapshot the actuator took; ``window`` is the step window that goes with it."""
        learning = is_learning(window, self.cfg)
        entry = SnapshotEntry(step, window, self.lr_factor, float(window.smoothed), lr, learning, steady)
        if self.steer.probing:  # a copy along the probe's ramp: not a place a finding rolls back to
            self.ramp = thin_ramp([*self.ramp, (self._ramp_rate, entry)], self.cfg.probe_rewind_keep,
                                  keep_first=self.steer.replay is not None)
            return self.kept()
        self.ramp = []
        if step == 0 and self.initial is None:
            self.initial = entry
        self.recent.append(entry)
        if self.best is None or not (entry.loss >= self.best.loss):
            self.best = entry
        return self.kept()

    def kept(self) -> frozenset[int]:
        return frozenset(s.step for s in [*self.recent, self.best, self.initial, *(e for _, e in self.ramp)]
                         if s is not None)

    def forget_snapshots(self) -> None:
        self.recent.clear()
        self.ramp = []
        self.best = None
        self.initial = None

    # -- evaluations ----------------------------------------------------------------------------------
    def respond_epoch(self, det: Detection, verdict: EpochVerdict, best_epoch: int | None, lr: float,
                      has_best_weights: bool, *, best_value: float = math.nan, value: float = math.nan
                      ) -> str | None:
        if not self.heal:
            return None
        if det.code == "TM309":
            if self.cut_epoch is None or best_epoch is None or self.cut_epoch < best_epoch:
                # A rate too high for this stage zigzags and rises like overfitting (issue 12): lower it once
                # before stopping; a run that really overfits rises again, and is stopped then.
                # The best weights come back with the lower rate: a run that ends right after still ends on them.
                n = len(verdict.actions)
                text = self._scale_lr(det.code, self.cfg.plateau_lr_factor, verdict, lr)
                self.cut_epoch = verdict.epoch
                if len(verdict.actions) > n and has_best_weights and best_epoch is not None:
                    verdict.restore_best = best_epoch
                    verdict.actions[-1].update(restored_epoch=best_epoch, best_value=best_value, last_value=value)
                    text += f", epoch {best_epoch}'s weights restored"
                return f"{text} before stopping: a validation rise at a rate too high looks like overfitting"
            return self._early_stop(det, verdict, best_epoch, has_best_weights, best_value, value)
        if det.code == "TM308":
            if lr * self.cfg.plateau_lr_factor < self.cfg.min_lr:
                # A plateau at the smallest rate heal may use is a run that has gone as far as it can:
                # early stopping on the best weights, not an exhausted heal (TM316, an error).
                return self._early_stop(det, verdict, best_epoch, has_best_weights, best_value, value) + \
                    f", a plateau at the smallest learning rate ({lr:.3g})"
            self.cut_epoch = verdict.epoch
            return self._scale_lr(det.code, self.cfg.plateau_lr_factor, verdict, lr)
        return None

    def restore_on_stop(self, v: EpochVerdict, reason: str, best_epoch: int | None, best_value: float,
                        value: float) -> None:
        """Heal stops at this evaluation (an exhausted budget): like its early stop, it ends on the best
        evaluation's weights rather than the last ones, and says what that kept."""
        if v.restore_best is None and best_epoch is not None:
            v.restore_best = best_epoch
            v.actions.append({"action": "restore-best", "reason": reason, "epoch": best_epoch,
                              **_saved(v, best_epoch, best_value, value)})

    def _early_stop(self, det: Detection, v: EpochVerdict, best_epoch: int | None, has_best_weights: bool,
                    best_value: float, value: float) -> str:
        """Stop, put the best evaluation's weights back, and say what that saved: the evaluations since the
        best that are undone, and the monitored value kept instead of the last one."""
        v.stop = True
        saved = _saved(v, best_epoch, best_value, value)
        v.actions.append({"action": "stop", "reason": det.code, **saved})
        if not has_best_weights or best_epoch is None:
            return "stop early (no best weights kept)"
        self.restore_on_stop(v, det.code, best_epoch, best_value, value)
        det.evidence["stop_saved"] = saved
        return (f"stop early, restore epoch {best_epoch}'s weights ({best_value:.4g} instead of {value:.4g} "
                f"after {saved['epochs_undone']} more evaluation(s))")

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "lr_factor": self.lr_factor, "zero_after_step": self.zero_after_step,
                "recent": [_entry_state(s) for s in self.recent],
                "best": _entry_state(self.best) if self.best else None,
                "initial": _entry_state(self.initial) if self.initial else None, "steer": self.steer.state_dict(),
                "cut_epoch": self.cut_epoch, "rate_restart": self.rate_restart}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state["rollbacks"])
        self.lr_factor = float(state["lr_factor"])
        self.zero_after_step = bool(state["zero_after_step"])
        self.recent = deque((_entry_from(s) for s in state["recent"]), maxlen=self.recent.maxlen)
        best = state.get("best")
        self.best = _entry_from(best) if best else None
        initial = state.get("initial")
        self.initial = _entry_from(initial) if initial else None
        # the best and the initial are the same objects as recent entries of the same step
        for s in self.recent:
            if self.best is not None and s.step == self.best.step:
                self.best = s
            if self.initial is not None and s.step == self.initial.step:
                self.initial = s
        if "steer" in state:
            self.steer.load_state_dict(state["steer"])
        self.cut_epoch = state.get("cut_epoch")
        self.rate_restart = state.get("rate_restart")


def _saved(v: EpochVerdict, best_epoch: int | None, best_value: float, value: float) -> dict[str, Any]:
    """What ending on the best evaluation keeps: its value against the last one, and the evaluations undone."""
    return {"best_epoch": best_epoch, "best_value": best_value, "last_epoch": v.epoch, "last_value": value,
            "epochs_undone": v.epoch - best_epoch if best_epoch is not None else None}


def is_learning(window: StepWindow, cfg: Thresholds) -> bool:
    """The smoothed loss is clearly below the run's starting level (twice TM317's margin): what makes a
    snapshot one "that was learning", and a run the rate audit may judge (heal/rate_audit.py)."""
    start = start_level(window)
    return bool(window.smoothed < (1 - 2 * cfg.not_learning_margin) * start) if start > 0 else False


def _entry_state(entry: SnapshotEntry) -> dict[str, Any]:
    return {**{k: v for k, v in asdict(entry).items() if k != "window"}, "window": entry.window.state_dict()}


def _entry_from(state: dict[str, Any]) -> SnapshotEntry:
    state = copy.deepcopy(state)
    return SnapshotEntry(**{**state, "window": StepWindow.from_state(state["window"])})

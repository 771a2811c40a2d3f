"""The heal policy: what each finding asks to be done, within budgets. Watch mode asks for nothing.

| finding | heal action |
|---|---|
| TM301, TM302 | skip the step; ``nonfinite_rollback_after`` in a row -> roll back |
| TM303 | clip the step to the running bound |
| TM305, TM306 | roll back to the last healthy snapshot, lower the learning rate |
| TM307 | learning rate x ``oscillation_lr_factor`` |
| TM308 | learning rate x ``plateau_lr_factor`` |
| TM309 | stop early, restore the best weights |
| TM310 | reset the gradients after every step from now on |

Budgets: at most ``max_rollbacks`` rollbacks and a learning rate of at least ``min_lr``; past them the
policy answers "exhausted" and the engine reports TM316 and stops, so heal can never loop.

The policy also keeps the catalogue of heal snapshots (their step, the step window saved with them, the
learning rate in them): plain data. The tensors themselves live in :class:`~trainmedic.heal.actions.Actuator`,
which keeps exactly the steps this catalogue lists.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.rules.detectors import Detection
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


class Policy:
    """Maps findings to requested actions on a verdict. Holds heal's budgets and snapshot catalogue."""

    def __init__(self, mode: str, cfg: Thresholds) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be 'watch' or 'heal', got {mode!r}")
        self.mode = mode
        self.cfg = cfg
        self.rollbacks = 0
        self.lr_factor = 1.0  # product of every lr change heal made
        self.zero_after_step = False
        self.recent: deque[SnapshotEntry] = deque(maxlen=max(1, cfg.snapshots_kept))
        self.best: SnapshotEntry | None = None
        self._step_actions: dict[str, Callable[[Detection, StepVerdict, StepWindow, float], str]] = {
            "TM301": self._skip, "TM302": self._skip, "TM303": self._clip, "TM305": self._rollback,
            "TM306": self._rollback, "TM307": self._oscillation, "TM310": self._zero_after_step,
        }

    @property
    def heal(self) -> bool:
        return self.mode == "heal"

    # -- steps --------------------------------------------------------------------------------------
    def respond(self, det: Detection, verdict: StepVerdict, window: StepWindow, lr: float,
                consecutive_nonfinite: int = 0) -> str | None:
        """Request on ``verdict`` what ``det`` calls for; returns the action text for the finding."""
        act = self._step_actions.get(det.code)
        if not self.heal or act is None:
            return None
        text = act(det, verdict, window, lr)
        if det.code in ("TM301", "TM302") and consecutive_nonfinite >= self.cfg.nonfinite_rollback_after:
            self._rollback(det, verdict, window, lr)
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
        v.actions.append({"action": "lr-change", "reason": reason, "lr_before": lr, "lr_after": lr * factor})
        return f"lr x{factor:g}"

    def _rollback(self, det: Detection, v: StepVerdict, window: StepWindow, lr: float) -> str:
        v.proceed = v.applied = False
        v.zero_grads = True
        v.clip_to = None  # the step is not applied: nothing to clip
        v.actions = [a for a in v.actions if a["action"] != "clip"]
        cfg = self.cfg
        if self.rollbacks >= cfg.max_rollbacks:
            v.exhausted = f"{self.rollbacks} rollbacks used (max_rollbacks={cfg.max_rollbacks})"
            return "roll back refused (budget)"
        entry = self._choose(det.onset)
        if entry is None or entry.lr is None:
            v.exhausted = "no healthy snapshot to roll back to"
            return "roll back refused (no snapshot)"
        # The new rate is at most rollback_lr_factor times the rate that failed. When the rate had risen
        # since the snapshot (a schedule, a manual change), the snapshot's own rate already satisfies that
        # and is kept on the first rollback; later rollbacks lower it further.
        lr_snap = entry.lr * (self.lr_factor / entry.lr_factor)
        keep = 1.0 if self.rollbacks == 0 else cfg.rollback_lr_factor
        target = min(lr_snap * keep, cfg.rollback_lr_factor * lr)
        if self._below_min(target, v, lr):
            return "roll back refused (min_lr)"
        multiplier = target / entry.lr if entry.lr > 0 else 1.0
        self.lr_factor = entry.lr_factor * multiplier
        self.rollbacks += 1
        # Snapshots taken after the chosen one may already hold the fault.
        self.recent = deque([s for s in self.recent if s.step <= entry.step], maxlen=self.recent.maxlen)
        v.rollback = Rollback(entry.step, multiplier, lr, target, det.code)
        v.keep_snapshots = self.kept()
        v.actions.append({"action": "rollback", "reason": det.code, "to_step": entry.step, "lr_before": lr,
                          "lr_after": target, "rollbacks": self.rollbacks})
        return f"roll back, lr x{cfg.rollback_lr_factor:g}"

    def _below_min(self, target: float, v: StepVerdict | EpochVerdict, lr: float) -> bool:
        if target < self.cfg.min_lr:
            v.exhausted = f"learning rate {lr:.3g} cannot go below min_lr={self.cfg.min_lr:g}"
            return True
        return False

    def _choose(self, onset: int | None) -> SnapshotEntry | None:
        by_step = {s.step: s for s in [*self.recent, self.best] if s is not None}
        candidates = [by_step[k] for k in sorted(by_step)]
        if not candidates:
            return None
        if onset is not None:
            before = [s for s in candidates if s.step <= onset]
            if before:
                return before[-1]
        return candidates[0]

    # -- snapshots ------------------------------------------------------------------------------------
    def initial_snapshot(self, step: int) -> int | None:
        """Heal keeps the initial weights: always a valid place to return to."""
        return step if self.heal and step == 0 else None

    def snapshot_due(self, step: int, window: StepWindow) -> int | None:
        """After step ``step`` is applied: a snapshot labelled ``step + 1`` when the run is healthy."""
        if self.heal and (step + 1) % self.cfg.snapshot_every == 0 and window.healthy(step, self.cfg):
            return step + 1
        return None

    def snapshot_taken(self, step: int, window: StepWindow, lr: float) -> frozenset[int]:
        """Catalogue a snapshot the actuator took; ``window`` is the step window that goes with it."""
        entry = SnapshotEntry(step, window, self.lr_factor, float(window.smoothed), lr)
        self.recent.append(entry)
        if self.best is None or not (entry.loss >= self.best.loss):
            self.best = entry
        return self.kept()

    def kept(self) -> frozenset[int]:
        return frozenset(s.step for s in [*self.recent, self.best] if s is not None)

    def forget_snapshots(self) -> None:
        self.recent.clear()
        self.best = None

    # -- evaluations ----------------------------------------------------------------------------------
    def respond_epoch(self, det: Detection, verdict: EpochVerdict, best_epoch: int | None, lr: float,
                      has_best_weights: bool) -> str | None:
        if not self.heal:
            return None
        if det.code == "TM309":
            verdict.stop = True
            verdict.actions.append({"action": "stop", "reason": det.code, "best_epoch": best_epoch})
            if has_best_weights:
                verdict.restore_best = best_epoch
                verdict.actions.append({"action": "restore-best", "reason": det.code, "epoch": best_epoch})
            return "stop early, restore best weights"
        if det.code == "TM308":
            return self._scale_lr(det.code, self.cfg.plateau_lr_factor, verdict, lr)
        return None

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "lr_factor": self.lr_factor, "zero_after_step": self.zero_after_step,
                "recent": [_entry_state(s) for s in self.recent],
                "best": _entry_state(self.best) if self.best else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state["rollbacks"])
        self.lr_factor = float(state["lr_factor"])
        self.zero_after_step = bool(state["zero_after_step"])
        self.recent = deque((_entry_from(s) for s in state["recent"]), maxlen=self.recent.maxlen)
        best = state.get("best")
        self.best = _entry_from(best) if best else None
        # the best is the same object as a recent entry of the same step
        for s in self.recent:
            if self.best is not None and s.step == self.best.step:
                self.best = s


def _entry_state(entry: SnapshotEntry) -> dict[str, Any]:
    return {**{k: v for k, v in asdict(entry).items() if k != "window"}, "window": entry.window.state_dict()}


def _entry_from(state: dict[str, Any]) -> SnapshotEntry:
    state = copy.deepcopy(state)
    return SnapshotEntry(**{**state, "window": StepWindow.from_state(state["window"])})

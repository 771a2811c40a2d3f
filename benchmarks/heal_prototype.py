"""PROTOTYPE heal loop for ``benchmarks/heal.py`` - NOT the engine, and not shipped.

It measures the figure the evidence-driven heal policy of issue 12 would reach once wired into the engine,
using only what the engine sees and can do in every entry point (``Medic``, ``trainmedic run``, the
Lightning / HF callbacks): each step's loss and gradients before the optimizer step; it can set the
learning rate, skip the step, take and restore in-memory snapshots, stop the run and restore the best
weights. It has ``Medic``'s loop interface (``step(loss)``, ``end_epoch(val_loss=...)``, ``should_stop``,
``findings``, ``events``), so the benchmark drives it with the very same loop.

What it does differently from today's heal (the pieces under test live in the package, pure and unit-tested:
``trainmedic.heal.lr_probe`` and ``trainmedic.heal.progress``):

* trouble (non-finite steps, divergence or a loss spike - today's detectors, also inside their warm-up -
  a run that is not learning, or a dead first layer) rolls back to a snapshot and starts an online
  learning-rate probe below the failing rate; when the probe is done the snapshot is restored again and
  the run continues at the rate the probe chose (linear warmup to it when the trouble began in the first
  steps), instead of halving;
* snapshots are taken only while the run is healthy, learning, and the rate has been stable;
* a validation plateau (``plateau_patience`` evaluations without a new best) lowers the rate x0.1 first;
* the overfitting stop needs a validation rise beyond the curve's own noise and trend, after that cut.

What it leaves out (today's heal keeps doing them; the second phase keeps them): clipping of gradient
spikes (TM303), forensics and quarantine, zero-grad repair (TM310).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainmedic.config import Thresholds
from trainmedic.heal import progress
from trainmedic.heal.lr_probe import DEFAULT_STEPS, LRProbe, ProbeDone
from trainmedic.heal.snapshot import Snapshot
from trainmedic.rules import runtime as rt


@dataclass
class ProtoFinding:
    code: str
    severity: str
    step: int
    message: str


@dataclass
class Saved:
    """A snapshot and what the prototype knew about the run when it took it."""

    snap: Snapshot
    lr: float  # the rate in force
    stable_steps: int  # steps trained at that rate since the last restart or rate change
    learning: bool  # the smoothed loss was clearly below the no-learning level


class PrototypeHeal:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 constant_level: float | None = None, snapshot_every: int = 25, max_probes: int = 4,
                 probe_steps: int = DEFAULT_STEPS, warmup_steps: int = 50, early_steps: int = 50,
                 min_lr: float = 1e-8, detect_after: int = 20, not_learning_window: int = 50,
                 plateau_patience: int = 3) -> None:
        self.model = model
        self.optimizer = optimizer
        self.cfg = Thresholds()
        self.constant_level = constant_level
        self.snapshot_every = snapshot_every
        self.max_probes = max_probes
        self.probe_len = probe_steps
        self.warmup_steps = warmup_steps
        self.early_steps = early_steps
        self.min_lr = min_lr
        self.detect_after = detect_after
        self.nl_window = not_learning_window
        opt_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.params = [p for p in model.parameters() if id(p) in opt_ids]
        weights = [p for p in self.params if p.dim() >= 2]
        self.first = weights[0] if weights else self.params[0]
        base = float(optimizer.param_groups[0]["lr"])
        self.ratios = [float(g["lr"]) / base for g in optimizer.param_groups]

        self.t = 0
        self.should_stop = False
        self.events: list[dict[str, Any]] = []
        self.findings: list[ProtoFinding] = []
        self.probe_steps = 0
        self.probes = 0
        self.probe: LRProbe | None = None
        self.probe_from: Saved | None = None
        self.probe_early = False
        self.warm: tuple[int, float] | None = None  # (steps left, target rate)
        self.snaps: deque[Saved] = deque(maxlen=3)
        self._reset_monitor()
        self.lr_seen = self.lr
        self.stable_steps = 0
        self.nonfinite_steps: deque[int] = deque(maxlen=3)
        self.val_hist: list[float] = []
        self.val_from = 0  # the first evaluation of the current trajectory (after the last restore)
        self.train_hist: list[float] = []
        self.epoch_losses: list[float] = []
        self.best_val = math.inf
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None
        self.cut_since_best = False
        self.plateau_patience = plateau_patience
        self.epoch = 0
        self.first_losses: list[float] = []
        self.run_initial = math.nan
        self.last_trouble_step = -(10**9)
        self.raise_window = 50
        self.raised: tuple[int, float, list[float]] | None = None  # (step, rate before, losses before)

    # ------------------------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _set_lr(self, lr: float) -> None:
        for g, r in zip(self.optimizer.param_groups, self.ratios):
            g["lr"] = lr * r
        self.lr_seen = self.lr

    def _reset_monitor(self) -> None:
        self.losses: list[float] = []  # finite losses since the last (re)start
        self.first_norms: deque[float] = deque(maxlen=16)
        self.best = math.inf
        self.best_step = -1
        self.smoothed = math.nan
        self.initial = math.nan
        self.steps_since_start = 0

    def _finding(self, code: str, severity: str, message: str) -> None:
        if not any(f.code == code for f in self.findings):
            self.findings.append(ProtoFinding(code, severity, self.t, message))

    def _event(self, action: str, reason: str, **detail: Any) -> None:
        self.events.append({"type": "action", "step": self.t, "epoch": self.epoch, "action": action,
                            "reason": reason, **detail})

    @property
    def reference(self) -> float:
        init = self.run_initial if math.isfinite(self.run_initial) else math.inf
        const = self.constant_level if self.constant_level is not None else math.inf
        return min(init, const)

    # ------------------------------------------------------------------------------------------------
    def step(self, loss: torch.Tensor) -> bool:
        t = self.t
        self.t += 1
        v = float(loss.detach())
        grads = [p.grad for p in self.params if p.grad is not None]
        gsq = float(sum(float(g.detach().float().pow(2).sum()) for g in grads))
        finite = math.isfinite(v) and math.isfinite(gsq)
        first_norm = float(self.first.grad.norm()) if self.first.grad is not None else 0.0
        if t == 0:
            self.initial_snap = self._save(0)
        if self.lr != self.lr_seen:  # the loop changed the rate itself (a schedule, a restart, a typo)
            if self.probe is None and self.lr > 1.5 * self.lr_seen > 0 and self.steps_since_start > self.detect_after:
                # A jump up: judge it on the loss level of the next steps against the steps before.
                self.raised = (t, self.lr_seen, self.losses[-self.raise_window:])
            self.lr_seen = self.lr
            self.stable_steps = 0

        if self.probe is not None:
            return self._probe_step(v if finite else math.inf)

        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_steps.append(t)
            self._finding("TM301/302", "error", f"non-finite loss or gradient at step {t}")
            self._event("skip-step", "non-finite", loss=v)
            if len(self.nonfinite_steps) == 3 and t - self.nonfinite_steps[0] < 20:
                return self._trouble("non-finite", "three non-finite steps within 20 steps", onset=t - 20)
            return False

        self.losses.append(v)
        self.epoch_losses.append(v)
        self.first_norms.append(first_norm)
        self.steps_since_start += 1
        self.stable_steps += 1
        if len(self.losses) <= self.cfg.smooth:
            self.initial = float(np.mean(self.losses))
        if len(self.first_losses) < self.cfg.smooth:
            self.first_losses.append(v)  # the run's own starting level: what a network that learned nothing scores
            self.run_initial = float(np.mean(self.first_losses))

        if self.warm is not None:
            left, target = self.warm
            self._set_lr(target * (self.warmup_steps - left + 1) / self.warmup_steps)
            self.warm = (left - 1, target) if left > 1 else None

        trouble = self._detect(t)
        if trouble is not None:
            return self._trouble(*trouble)
        self.optimizer.step()
        if (t + 1) % self.snapshot_every == 0 and self._healthy(t):
            self.snaps.append(self._save(t + 1))
        return True

    def _detect(self, t: int) -> tuple[str, str, int] | None:
        cfg = self.cfg
        if self.raised is not None and t - self.raised[0] >= self.raise_window:
            at, before_lr, before = self.raised
            self.raised = None
            verdict = progress.rose_after_change(before, self.losses[-self.raise_window:])
            if verdict is not None:
                msg = f"the loop raised the rate from {before_lr:.3g} to {self.lr:.3g} at step {at}: {verdict.message}"
                self._finding("rate-raise-hurt", "error", msg)
                return ("rate-raise", msg, at)
        dead = progress.dead_gradients(self.first_norms)
        if dead is not None:
            self._finding("dead-network", "error", dead.message)
            return ("dead-network", dead.message, t)
        if t % cfg.check_every:
            return None
        x = np.asarray(self.losses[-cfg.window:])
        if len(x) >= cfg.smooth:
            self.smoothed = rt.median(x[-cfg.smooth:])
            if self.smoothed < self.best:
                self.best, self.best_step = self.smoothed, t
        if self.steps_since_start <= self.detect_after:
            # Inside the warm-up of the window detectors: only a blow-up far above the starting level.
            if len(x) >= 5 and rt.median(x[-5:]) > cfg.divergence_ratio * self.initial:
                msg = f"loss {rt.median(x[-5:]):.4g} within {self.steps_since_start} steps of a start at {self.initial:.4g}"
                self._finding("TM305", "error", msg)
                return ("divergence", msg, t - self.steps_since_start)
            return None
        steps = np.arange(t - len(x) + 1, t + 1)
        det = rt.detect_loss_spike(x, steps, self.initial, self.best, cfg) or rt.detect_divergence(
            self.smoothed, self.best, self.best_step, self.initial, cfg, x, steps)
        if det is not None:
            self._finding(det.code, "error", det.message)
            return ("divergence", det.message, det.onset if det.onset is not None else t)
        nl = progress.not_learning(self.losses, reference=self.reference, window=self.nl_window)
        if nl is not None:
            self._finding("not-learning", "error", nl.message)
            return ("not-learning", nl.message, t - self.nl_window)
        return None

    def _healthy(self, t: int) -> bool:
        if self.warm is not None or self.raised is not None or self.stable_steps < self.snapshot_every:
            return False
        if t - self.last_trouble_step < self.snapshot_every or (self.nonfinite_steps and t - self.nonfinite_steps[-1] < self.snapshot_every):
            return False
        if math.isfinite(self.best) and math.isfinite(self.smoothed):
            if self.smoothed - self.best > 0.5 * max(abs(self.best), self.initial - self.best):
                return False
        return True

    def _save(self, step: int) -> Saved:
        snap = Snapshot.take(step, self.model, self.optimizer, None, None)
        learning = math.isfinite(self.smoothed) and self.smoothed < self.reference * 0.95
        return Saved(snap, self.lr, self.stable_steps, learning)

    # ------------------------------------------------------------------------------------------------
    def _trouble(self, kind: str, why: str, onset: int) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        self.last_trouble_step = self.t
        if self.probes >= self.max_probes:
            self._finding("TM316", "error", f"heal budget spent ({self.probes} probes)")
            self.should_stop = True
            return False
        ceiling = self.lr
        if kind in ("not-learning", "dead-network"):
            cands = [s for s in self.snaps if s.learning and s.snap.step <= onset]
        else:
            cands = [s for s in self.snaps if s.snap.step <= onset]
        target = cands[-1] if cands else self.initial_snap
        known = target.lr if target.stable_steps >= self.snapshot_every and target.lr < ceiling else None
        self.snaps = deque([s for s in self.snaps if s.snap.step <= target.snap.step], maxlen=self.snaps.maxlen)
        target.snap.restore(self.model, self.optimizer, None, None)
        self.probes += 1
        self.probe = LRProbe(ceiling, steps=self.probe_len, known_good=known)
        self.probe_from = target
        self.probe_early = target.snap.step == 0 or onset < self.early_steps
        self.warm = None
        self.raised = None
        self._set_lr(self.probe.rate(0))
        self._event("rollback", kind, to_step=target.snap.step, lr_before=ceiling, why=why)
        return False

    def _probe_step(self, v: float) -> bool:
        ans = self.probe.observe(v)
        self.probe_steps += 1
        if not isinstance(ans, ProbeDone):
            self._set_lr(ans.lr)
            if math.isfinite(v):
                self.optimizer.step()
            else:
                self.optimizer.zero_grad(set_to_none=True)
            return True
        choice = ans.choice
        self.optimizer.zero_grad(set_to_none=True)
        target = self.probe_from
        target.snap.restore(self.model, self.optimizer, None, None)
        self.probe = None
        lr = max(choice.lr, self.min_lr)
        if self.probe_early and choice.rule != "known-good":
            self.warm = (self.warmup_steps, lr)
            self._set_lr(lr / self.warmup_steps)
        else:
            self._set_lr(lr)
        self._reset_monitor()
        self.val_from = len(self.val_hist)
        self.nonfinite_steps.clear()
        self.stable_steps = 0
        self._event("probe", choice.rule, to_step=target.snap.step, lr_before=choice.evidence["ceiling"],
                    lr_after=lr, warmup=self.warm is not None, probe_steps=choice.steps, why=choice.reason,
                    trace=[[a, b] for a, b in zip(choice.lrs, choice.losses)])
        return False

    # ------------------------------------------------------------------------------------------------
    def end_epoch(self, val_loss: float) -> None:
        """Validation: a plateau lowers the rate first (ReduceLROnPlateau's factor 0.1, patience
        ``plateau_patience``); only a noise-beating rise after that stops the run and restores the best
        weights - so the zigzag of a rate that is too high is answered by a lower rate, not by a stop."""
        train = float(np.mean(self.epoch_losses)) if self.epoch_losses else math.nan
        self.epoch_losses = []
        self.val_hist.append(val_loss)
        self.train_hist.append(train)
        if math.isfinite(val_loss) and val_loss < self.best_val * (1 - 1e-3):
            self.best_val, self.best_epoch = val_loss, self.epoch
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        # The plateau is judged on the current trajectory only (since the last restore), so a rollback
        # does not inherit the epochs spent at the rate that failed.
        traj = self.val_hist[self.val_from:]
        traj_best = int(np.argmin(traj)) if traj and np.isfinite(traj).any() else 0
        if traj_best == len(traj) - 1:
            self.cut_since_best = False
        elif (len(traj) - 1 - traj_best >= self.plateau_patience and not self.cut_since_best
              and self.probe is None and self.warm is None):
            before = self.lr
            target = (self.warm[1] if self.warm is not None else before) * 0.1
            self.warm = None
            self._set_lr(target)
            self.cut_since_best = True
            self._finding("TM308", "info", f"no validation improvement for {self.plateau_patience} evaluations")
            self._event("lr-change", "plateau", lr_before=before, lr_after=target)
        verdict = progress.overfitting(self.val_hist[self.val_from:], self.train_hist[self.val_from:])
        if verdict is not None and self.best_weights is not None and self.cut_since_best:
            self._finding("TM309", "warning", verdict.message)
            self.should_stop = True
            self.model.load_state_dict(self.best_weights)
            self._event("stop", "overfitting", restored_epoch=self.best_epoch, verdict=verdict.evidence)
        self.epoch += 1

"""The running statistics the detectors read, with one complete ``state_dict()``.

Two groups, because a rollback must restore one and not the other:

* :class:`StepWindow` — the recent per-step curve (losses, gradient norms, best, smoothed level, the
  gradient bounds). It describes the weights the run is at, so a heal rollback restores the window saved
  with the snapshot it returns to.
* :class:`Monitor` — the window plus what belongs to the run as a whole: counters of consecutive
  non-finite or stale steps, the epoch's loss sum, the history of evaluations (plateau, overfitting), the
  sampled update/weight ratios, the dead-ReLU sample counts. A rollback keeps these.

Nothing here touches torch: values arrive as floats from :class:`~trainmedic.signals.collect.Collector`.
Memory is bounded: rings for per-step values, and at most ``2 * MAX_EVALUATIONS`` evaluations.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from trainmedic.config import Thresholds
from trainmedic.signals.history import Ring

MAX_EVALUATIONS = 1000  # evaluations kept for the epoch detectors (the oldest half dropped when twice as many)


def median(x: np.ndarray) -> float:
    """np.median without its wrapper overhead (this runs on the training loop's hot path)."""
    n = len(x)
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float(0.5 * (part[k - 1] + part[k]))


def robust_sigma(x: np.ndarray, med: float | None = None) -> float:
    """1.4826 * MAD: the standard deviation of normal data, unmoved by a few outliers."""
    return 1.4826 * median(np.abs(x - (median(x) if med is None else med)))


def gradient_bounds(log_norms: np.ndarray, cfg: Thresholds) -> tuple[float, float, float]:
    """(spike threshold, clip bound, running median) of the gradient norm, from recent log norms.

    A spike must be ``spike_factor`` times the median and ``spike_z`` robust sigmas above it (log space);
    heal clips to ``clip_z`` sigmas above the median (in the spirit of ZClip / AutoClip).
    """
    med = median(log_norms)
    sigma = max(robust_sigma(log_norms, med), 0.05)
    threshold = max(med + math.log(cfg.spike_factor), med + cfg.spike_z * sigma)
    clip = med + cfg.clip_z * sigma
    return math.exp(threshold), math.exp(clip), math.exp(med)


def _state(obj: Any) -> dict[str, Any]:
    return {f.name: (getattr(obj, f.name).state_dict() if isinstance(getattr(obj, f.name), Ring)
                     else copy.deepcopy(getattr(obj, f.name))) for f in fields(obj)}


def _load(obj: Any, state: dict[str, Any]) -> None:
    for f in fields(obj):
        if f.name not in state:
            continue
        cur = getattr(obj, f.name)
        if isinstance(cur, Ring):
            cur.load_state_dict(state[f.name])
        else:
            setattr(obj, f.name, copy.deepcopy(state[f.name]))


@dataclass
class StepWindow:
    """The recent training curve; saved with each heal snapshot and restored by a rollback."""

    window: int = 128
    losses: Ring = field(init=False)
    steps: Ring = field(init=False)
    log_gnorms: Ring = field(init=False)
    first_norms: Ring = field(init=False)  # gradient norm of the first weight layer
    last_norms: Ring = field(init=False)  # ... and of the last one
    finite_steps: int = 0
    initial: float = math.nan  # mean of the first ``smooth`` finite losses
    initial_parts: list[float] = field(default_factory=list)
    best: float = math.inf  # best smoothed loss so far, and its step
    best_step: int = -1
    smoothed: float = math.nan  # median of the last ``smooth`` losses, refreshed at each window check
    spike_threshold: float = math.inf
    clip_bound: float = math.inf
    gnorm_median: float = math.nan
    # recent [step, grad norm, median, threshold, loss level before, its robust sigma] (TM303's candidates)
    spikes: list[list[float]] = field(default_factory=list)
    spikes_reported: int = -1  # the last step whose spikes TM303 has reported
    last_anomaly: int = -(10**9)  # the last step a run-time detector fired (snapshots wait after it)
    quiet_until: dict[str, int] = field(default_factory=dict)  # detector -> step it may fire again

    def __post_init__(self) -> None:
        for name in ("losses", "steps", "log_gnorms", "first_norms", "last_norms"):
            setattr(self, name, Ring(self.window))

    def observe(self, step: int, loss: float, grad_norm: float, first: float, last: float, cfg: Thresholds) -> None:
        """One finite step. A gradient norm above the spike threshold enters the window clipped, so a
        spike does not raise the level it is judged against."""
        self.losses.append(loss)
        self.steps.append(step)
        self.finite_steps += 1
        if len(self.initial_parts) < cfg.smooth:
            self.initial_parts.append(loss)
            self.initial = float(np.mean(self.initial_parts))
        self.first_norms.append(first)
        self.last_norms.append(last)
        if grad_norm > 0:
            spiked = self.finite_steps > cfg.warmup_steps and grad_norm > self.spike_threshold
            self.log_gnorms.append(math.log(self.clip_bound if spiked else grad_norm))
            if spiked:  # a candidate for TM303, judged there (scale, the script's clipping, its effect)
                self.spikes.append([step, grad_norm, self.gnorm_median, self.spike_threshold,
                                    *self._level_before(step, cfg)])
                del self.spikes[:-8]

    def _level_before(self, step: int, cfg: Thresholds) -> tuple[float, float]:
        """The loss level in the ``4 * spike_confirm`` steps before ``step`` and its robust sigma (NaN with
        fewer than ``spike_confirm`` of them), kept with the spike: TM303 compares the loss after the
        optimizer's memory with it, and a divergence reported meanwhile rebases (clears) the window."""
        steps = self.steps.values()
        before = self.losses.values()[(steps < step) & (steps >= step - 4 * cfg.spike_confirm)]
        if len(before) < cfg.spike_confirm:
            return math.nan, math.nan
        base = median(before)
        return base, robust_sigma(before, base)

    def refresh(self, step: int, cfg: Thresholds) -> None:
        """Recompute the smoothed level, the best and the gradient bounds (every ``check_every`` steps)."""
        losses = self.losses.values()
        if len(losses) >= cfg.smooth:
            self.smoothed = median(losses[-cfg.smooth:])  # robust to a lone outlier
            if self.finite_steps >= cfg.smooth and self.smoothed < self.best:
                self.best, self.best_step = self.smoothed, step
        if len(self.log_gnorms) >= 8:
            self.spike_threshold, self.clip_bound, self.gnorm_median = gradient_bounds(self.log_gnorms.values(), cfg)

    def rebase(self, step: int) -> None:
        """Forget the curve before ``step`` (watch mode, after a divergence or spike was reported), so one
        event is reported once and the detectors judge what follows on its own terms."""
        self.losses.clear()
        self.steps.clear()
        self.best, self.best_step = self.smoothed, step

    def healthy(self, step: int, cfg: Thresholds) -> bool:
        """A state worth returning to: no anomaly for a while, and not far above the best level."""
        if step - self.last_anomaly < cfg.snapshot_every:
            return False
        if math.isfinite(self.best) and math.isfinite(self.smoothed):
            if self.smoothed - self.best > 0.5 * max(abs(self.best), self.initial - self.best):
                return False
        return True

    def copy(self) -> StepWindow:
        """An independent copy (the rings' buffers copied): what a heal snapshot keeps of the window."""
        return copy.deepcopy(self)

    def restore(self, other: StepWindow) -> None:
        """Become a copy of ``other`` (a rollback returns to the window saved with its snapshot)."""
        for f in fields(self):
            setattr(self, f.name, copy.deepcopy(getattr(other, f.name)))

    def state_dict(self) -> dict[str, Any]:
        return _state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("window", self.window)) != self.window:
            self.window = int(state["window"])
            self.__post_init__()
        _load(self, state)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StepWindow:
        w = cls(int(state.get("window", 128)))
        w.load_state_dict(state)
        return w


@dataclass
class Monitor:
    """Every running statistic of a run: the step window and the run-level counters."""

    cfg: Thresholds = field(default_factory=Thresholds)
    step_window: StepWindow = field(init=False)
    ratios: Ring = field(init=False)  # sampled update/weight norm ratios (TM312, TM315)
    stale_run: int = 0  # steps in a row that found stale gradients (TM310)
    consecutive_nonfinite: int = 0
    amp_skips: int = 0  # GradScaler skips in a row (TM314)
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0
    val_hist: list[float] = field(default_factory=list)  # the monitored value per evaluation
    train_hist: list[float] = field(default_factory=list)  # the epoch's mean training loss, aligned
    plateau_from: int = 0  # evaluations before this index predate the last lr change
    plateau_cooldown: int = 0
    best_val: float = math.inf
    best_epoch: int | None = None
    validated: bool = False  # the evaluations in val_hist carry validation values (not training losses)
    # what val_hist holds, for the messages: "val_loss", "val_metric" (lower is better), "-val_metric" (a
    # higher-is-better metric, negated so that lower is better for every rule) or "train_loss"
    monitored_as: str = "val_loss"
    players: int = 1  # optimizers stepping in turn at the last step (>= 2: a game, no loss to minimise)
    once_done: list[str] = field(default_factory=list)  # detectors that run once and have run
    dead_runs: dict[str, int] = field(default_factory=dict)  # ReLU layer -> dead samples in a row (TM311)
    died_at: int = -1  # the step TM318 dated the network's death to (-1: none reported); TM311 then adds nothing

    def __post_init__(self) -> None:
        self.step_window = StepWindow(self.cfg.window)
        self.ratios = Ring(64)

    # -- per step ---------------------------------------------------------------------------------
    @property
    def warm(self) -> bool:
        return self.step_window.finite_steps > self.cfg.warmup_steps

    def observe_step(self, step: int, loss: float, grad_norm: float, first: float, last: float) -> None:
        self.consecutive_nonfinite = 0
        self.amp_skips = 0
        self.epoch_loss_sum += loss
        self.epoch_loss_n += 1
        self.step_window.observe(step, loss, grad_norm, first, last, self.cfg)

    def observe_update(self, update_norm: float | None, weight_norm: float | None) -> None:
        if update_norm is not None and weight_norm:
            self.ratios.append(update_norm / weight_norm)

    def observe_stale(self, stale: float | None) -> None:
        self.stale_run = self.stale_run + 1 if stale is not None and stale > 0 else 0

    def observe_nonfinite(self, step: int) -> None:
        self.consecutive_nonfinite += 1
        self.step_window.last_anomaly = step

    def observe_activations(self, dead: dict[str, float], threshold: float) -> None:
        for layer, share in dead.items():
            self.dead_runs[layer] = self.dead_runs.get(layer, 0) + 1 if share >= threshold else 0

    # -- per evaluation ---------------------------------------------------------------------------
    def close_epoch_loss(self) -> float:
        train = self.epoch_loss_sum / self.epoch_loss_n if self.epoch_loss_n else math.nan
        self.epoch_loss_sum, self.epoch_loss_n = 0.0, 0
        return train

    def observe_evaluation(self, monitored: float, train: float, epoch: int, validated: bool = False,
                           kind: str = "val_loss") -> bool:
        """Record an evaluation; True when it improved on the best (ReduceLROnPlateau's relative rule).

        ``validated``: the value is a validation loss/metric. The first one after evaluations that could
        only monitor the training loss (an epoch closed before the script's first validation, e.g. one that
        validates every second epoch) starts the history over: the two series are in different units and
        must never be compared (a training MSE as the "best" made every later validation look worse).
        """
        if validated and not self.validated:
            self.validated = True
            self.val_hist.clear()
            self.train_hist.clear()
            self.plateau_from = 0
            self.best_val, self.best_epoch = math.inf, None
        elif self.validated and not validated:
            return False  # a training-only epoch between validations: not a point of the monitored curve
        self.monitored_as = kind
        self.val_hist.append(monitored)
        self.train_hist.append(train)
        if len(self.val_hist) > 2 * MAX_EVALUATIONS:  # the detectors look at recent evaluations only
            del self.val_hist[:MAX_EVALUATIONS], self.train_hist[:MAX_EVALUATIONS]
            self.plateau_from = max(0, self.plateau_from - MAX_EVALUATIONS)
        improved = (monitored < self.best_val - self.cfg.plateau_threshold * abs(self.best_val)
                    if math.isfinite(self.best_val) else True)
        if improved:
            self.best_val, self.best_epoch = monitored, epoch
        return improved

    def restart_plateau(self, cooldown: int = 0) -> None:
        """The lr changed: evaluations so far no longer count towards a plateau."""
        self.plateau_from = len(self.val_hist)
        self.plateau_cooldown = cooldown

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in _state(self).items() if k not in ("cfg", "step_window")}
        state["step_window"] = self.step_window.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _load(self, {k: v for k, v in state.items() if k not in ("cfg", "step_window")})
        if "step_window" in state:
            self.step_window.load_state_dict(state["step_window"])

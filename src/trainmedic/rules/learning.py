"""TM317-TM319: is the run learning at all? Rules documented beside their detectors (issue 12).

A rate far too high does not always announce itself with a NaN or a rising loss. It can leave the loss at
the level of a network that learned nothing (TM317), kill every unit so that no gradient reaches the
first layer (TM318), or, when the loop itself raises the rate mid-run, lift the loss to a worse level
without the spike a divergence detector waits for (TM319). Each is a finding in watch mode; in heal mode
each is a rollback followed by a learning-rate probe (:mod:`trainmedic.heal.policy`).

A blow-up *inside* the detectors' warm-up (a run that blows up at step 6 has its blown-up level as its
"best") is TM305's own business: :func:`trainmedic.rules.runtime._early_divergence` reports it, and heal
answers it with a restart from the initial weights, a probe and a warmup.

The detectors are pure: they read the step window of :class:`~trainmedic.signals.monitor.Monitor` and the
learning-rate record :class:`RateWatch`, which the engine keeps (plain data, in its ``state_dict()``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainmedic.heal import progress
from trainmedic.rules.detectors import Cadence, Detection, Observation, detector
from trainmedic.rules.levels import at_constant_level, window_before
from trainmedic.rules.registry import rule
from trainmedic.signals.monitor import Monitor, StepWindow


def start_level(window: StepWindow) -> float:
    """The level a network that learned nothing sits at, read from the run itself: the first loss, taken
    before any update. Not the mean of the first few: a linear model at a good rate learns in one step
    (2.27, then 0.31, 0.19...), and a rate far too high blows up within them (Adam at 100x: 1.39, then a
    mean of 7.5 over the first 10). One batch can be unrepresentative (unshuffled data whose batches
    alternate between an easy and a hard group); TM317 therefore only reads levels up to
    `divergence_ratio` times this one, and the early divergence check reads its own reference."""
    parts = window.initial_parts
    return float(parts[0]) if parts else math.nan


def started_trained(obs: Observation, first: float) -> bool:
    """The run started from trained weights and kept what they knew: its first loss beat the best constant
    prediction clearly (by twice TM317's margin) and none of its first ``smooth`` losses rose to that
    constant level (a fine-tune, a resumed run with a fresh optimizer). A loss that stays at such a start has
    not "learned nothing", it has little left to learn; TM317 then says nothing.

    Measured (``benchmarks/audit_finetune.py``): a classifier trained 4 epochs and continued with a fresh
    Adam at its rate or a third of it got a false TM317 in 4 of 8 runs, and heal's rollback ended them
    1.07-1.16x above the plain run. Continued at 30x the rate, the first steps throw the loss above the
    constant level (2.0-2.9 against 1.38): what the weights knew is lost, and TM317 judges the run as before
    (heal ended those 0.71-0.84x the plain run). A fresh network starts at or above the constant level, so
    the runs TM317 is for are unchanged. Only where the targets tell the level (``obs.levels``: nn loss
    modules, or functional losses with ``batch=``)."""
    constant = obs.levels.value if obs.levels is not None else math.nan
    early = obs.monitor.step_window.initial_parts
    return bool(math.isfinite(constant) and constant > 0 and early
                and first < constant * (1 - 2 * obs.cfg.not_learning_margin) and max(early) < constant)


def early_level(window: StepWindow) -> float:
    """The reference of the early divergence check: the largest of the first three losses, so that a
    first batch easier than the others does not make the next ones look like a blow-up."""
    parts = window.initial_parts[:3]
    return float(max(parts)) if parts else math.nan


@dataclass
class RateWatch:
    """What the engine knows of the learning rate from step to step (plain data).

    ``expected`` is the rate the next step should run at: the rate of this step times whatever heal
    changed. A step that arrives with a rate more than ``raise_factor`` times that was raised by the loop
    itself (a schedule restart, a manual change, a typo); the losses before it are kept so TM319 can
    compare the level after it. ``anchor``/``steady`` count the steps trained at about the same rate
    (within ``raise_factor`` either way), which heal's snapshots wait for.
    """

    expected: float = math.nan
    anchor: float = math.nan
    steady: int = 0
    raised_at: int = -1
    lr_before: float = math.nan
    lr_after: float = math.nan
    before: list[float] = field(default_factory=list)

    def observe(self, step: int, lr: float, window: StepWindow, warm: bool, factor: float, keep: int,
                planned: bool = False) -> None:
        """``planned``: a scheduler that raises the rate by design sets it; its raises are not the loop's."""
        if not math.isfinite(lr):
            return
        if self.pending and step - self.raised_at > 2 * keep:
            self.forget_raise()  # judged (TM319 had its window of steps after it) and not harmful
        if warm and not planned and self.raised_at < 0 and math.isfinite(self.expected) and lr > factor * self.expected > 0:
            self.raised_at, self.lr_before, self.lr_after = step, self.expected, lr
            self.before = [float(v) for v in window.losses.values()[-keep:]]
        if not (math.isfinite(self.anchor) and self.anchor / factor <= lr <= self.anchor * factor):
            self.anchor, self.steady = lr, 0
        self.steady += 1
        self.expected = lr

    def settle(self, lr_next: float) -> None:
        """The rate heal leaves for the next step (after any rollback or change)."""
        self.expected = lr_next

    def forget_raise(self) -> None:
        self.raised_at, self.before = -1, []

    def restart(self) -> None:
        """A rollback: the rate starts a new steady stretch, and a pending raise is moot."""
        self.forget_raise()
        self.anchor, self.steady = math.nan, 0

    @property
    def pending(self) -> bool:
        return self.raised_at >= 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, list(v) if k == "before" else v)


# ---------------------------------------------------------------------------------------------------
NOT_LEARNING = rule(
    "TM317",
    "not-learning",
    "warning",
    summary="The training loss stays at the level of a network that learned nothing, with no downward trend.",
    what="""
        Over the last `not_learning_window` steps the training loss sat at its starting level (at most
        `not_learning_margin` below it), its two halves are level within their noise (a second half clearly
        above the first, by the noise and by one margin, is a loss still moving: the next window judges it,
        and one that keeps climbing is a divergence, TM305, or is judged once a whole window before it sat
        at the no-learning level too), and the updates are
        not small (the update/weight ratio is above `not_learning_min_ratio`, so the rate is not too low).
        The run is moving its weights without learning anything. Only a window trained at about one rate
        is judged (within `raise_factor` either way): a warmup, the loop's or heal's, is judged once it ends.
        """,
    why="""
        A learning rate far too high: every step overshoots, and the network settles at the loss of the
        best constant prediction (log(classes) for a balanced classifier, the target's variance for a
        regression). Adam at 30x-100x its rate does this without a single NaN (issue 12). A rate too low
        also learns slowly, but with a steady downward trend, which this rule reads and leaves alone.
        """,
    fix="""
        Lower the learning rate, typically by one or two decades: run `trainmedic lr-find`, or restart with
        warmup. Heal mode rolls back to the last snapshot that was learning (or the initial weights), probes
        the rates below the current one for a few dozen steps and continues at the rate the probe supports.
        """,
    example="""
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1)    # the loss sits at log(4) = 1.386
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        """,
)

DEAD_NETWORK = rule(
    "TM318",
    "dead-network",
    "error",
    summary="The first layer's gradient has been exactly zero for several steps after it was not.",
    what="""
        The gradient reaching the first weight layer was exactly 0.0 for `dead_steps` steps in a row,
        after it had been non-zero earlier in the run. Not small: zero. Every unit between the first
        layer and the loss is off (ReLUs that output 0 for every input), so no gradient flows and the run
        cannot recover by itself.
        """,
    why="""
        A blow-up, usually from a learning rate too high: one huge step pushes the biases so far negative
        that every ReLU is off for every input. This is death, not vanishing gradients (TM304, a small
        ratio between layers): a different initialization does not help, undoing the step does.
        """,
    fix="""
        Lower the learning rate and restart from weights before the blow-up; add warmup or gradient
        clipping; LeakyReLU/GELU cannot die this way. Heal mode rolls back to the last snapshot that was
        learning (or the initial weights) and probes a rate.
        """,
    example="""
        optimizer = torch.optim.SGD(cnn.parameters(), lr=1.0, momentum=0.9)   # all ReLUs off by step 30
        """,
)

HARMFUL_RATE_RAISE = rule(
    "TM319",
    "harmful-rate-raise",
    "warning",
    summary="The loop raised the learning rate and the loss settled at a worse level.",
    what="""
        Between two steps the learning rate rose by more than `raise_factor` (trainmedic did not do it:
        the loop, a scheduler restart, a manual change), and over the `raise_window` steps after it the
        loss level (median) is above the level of the steps before by more than 3 standard errors of the
        difference and by more than 10 %. No NaN, no spike: the run just got worse and stays worse.
        The same finding, sooner: when within `raise_window` steps of the raise the gradient norm explodes
        (what TM303 reports) or the loss or gradients turn non-finite (TM301/TM302), the raise is named as
        their cause at that step, before them. A raise made by a scheduler that raises the rate by design
        (`CosineAnnealingWarmRestarts`, `CyclicLR`, `OneCycleLR`, known to Medic through `scheduler=` or
        seen by `trainmedic run` or Lightning) is not judged: it is the schedule working.
        """,
    why="""
        The new rate is too high for where the run is. Adam at 30x its rate doubles the loss of a
        classifier without the 4x rise a divergence detector waits for (issue 12). Practitioner note 004:
        the loss that rebounds after a change.
        """,
    fix="""
        Keep the old rate, or raise it gradually (warmup after a restart). Heal mode rolls back to a
        snapshot from before the raise and keeps the rate the run trained at there once a short probe
        confirms it.
        """,
    example="""
        for g in optimizer.param_groups: g["lr"] *= 30     # mid-run: the loss level doubles
        """,
)


@detector(NOT_LEARNING, cadence=Cadence.WINDOW, order=30, anomaly=True, curve=True)
def _not_learning(obs: Observation) -> Detection | None:
    cfg, m = obs.cfg, obs.monitor
    if obs.rates is not None and obs.rates.steady < cfg.not_learning_window:
        return None  # the rate changed inside the window (a warmup, heal's or the loop's): no verdict on one rate
    w = m.step_window
    ratios = m.ratios.values()
    ratio = float(np.median(ratios[-4:])) if len(ratios) else math.nan
    if ratio == ratio and ratio < cfg.not_learning_min_ratio:
        return None  # small updates: a rate too low (TM315's business), not one too high
    # Only the steps since the run (re)started at its current weights: the window's steps after its start.
    losses = w.losses.values()[-cfg.not_learning_window:]
    if w.finite_steps < cfg.not_learning_window:
        return None
    first = start_level(w)
    if started_trained(obs, first):
        return None
    pinned = at_constant_level(obs, losses, first)  # rules/levels.py: the constant-prediction reference
    if pinned is not None:
        return pinned
    v = progress.not_learning(losses, reference=first, window=cfg.not_learning_window,
                              margin=cfg.not_learning_margin, before=window_before(obs))
    if v is None or v.evidence["level"] > cfg.divergence_ratio * first:
        return None  # far above the first loss: a blow-up (TM305), or a first batch unlike the others
    return Detection(NOT_LEARNING.code, v.message, {**v.evidence, "update_ratio": ratio},
                     onset=obs.step - cfg.not_learning_window)


def _mark_dead(monitor: Monitor, obs: Observation) -> None:
    monitor.died_at = obs.step


def reported_dead(obs: Observation) -> bool:
    """TM318 named this death and no gradient has reached the first layer since: the all-zero gradients
    TM311 would report as a dead network are the same event, already explained (one finding, not two; the
    sampled ReLU layers TM311 names are still reported, they say which layer died). Once a gradient flows
    again (heal rolled back, or the run revived) TM311 judges as before."""
    w = obs.monitor.step_window
    return obs.monitor.died_at >= 0 and len(w.first_norms) > 0 and w.first_norms.last() == 0.0


@detector(DEAD_NETWORK, cadence=Cadence.STEP, order=20, anomaly=True, needs_warmup=False,
          quiet=lambda cfg: cfg.window, after_fire=_mark_dead)
def _dead_network(obs: Observation) -> Detection | None:
    w = obs.monitor.step_window
    n = obs.cfg.dead_steps
    if len(w.first_norms) < n + 1 or w.first_norms.last() != 0.0:
        return None
    norms = w.first_norms.values()
    if progress.dead_gradients(norms, steps=n) is None or not (norms[:-n] > 0).any():
        return None  # never had a gradient: an unused or frozen layer, not a death
    alive = int(np.nonzero(norms > 0)[0][-1])
    steps = w.steps.values()
    died = int(steps[alive + 1]) if alive + 1 < len(steps) else obs.step
    return Detection(DEAD_NETWORK.code,
                     f"the first layer's gradient has been exactly 0 since step {died} ({len(norms) - alive - 1} "
                     "steps): nothing reaches it, every unit after it is off (a ReLU) or saturated (a tanh or sigmoid at "
                     "+-1)",
                     {"steps_zero": len(norms) - alive - 1, "since_step": died, "layer": obs.layers[0]
                      if obs.layers else None}, onset=died)


def _judged(monitor: Monitor, obs: Observation) -> None:
    if obs.rates is not None:
        obs.rates.forget_raise()


@detector(HARMFUL_RATE_RAISE, cadence=Cadence.WINDOW, order=40, anomaly=True, after_fire=_judged, curve=True)
def _harmful_rate_raise(obs: Observation) -> Detection | None:
    rates, cfg = obs.rates, obs.cfg
    if rates is None or not rates.pending:
        return None
    w = obs.monitor.step_window
    steps, losses = w.steps.values(), w.losses.values()
    after = losses[steps >= rates.raised_at]
    if len(after) < cfg.raise_window:
        return None
    v = progress.rose_after_change(rates.before, after[: cfg.raise_window])
    if v is None:
        return None
    return Detection(HARMFUL_RATE_RAISE.code,
                     f"the rate was raised from {rates.lr_before:.3g} to {rates.lr_after:.3g} at step "
                     f"{rates.raised_at}: {v.message}",
                     {**v.evidence, "raised_at": rates.raised_at, "lr_before": rates.lr_before,
                      "lr_after": rates.lr_after}, onset=rates.raised_at)


def _recent_raise(obs: Observation) -> bool:
    """A raise by the loop is pending and at most ``raise_window`` steps old (and after the warm-up)."""
    rates = obs.rates
    return rates is not None and rates.pending and 0 <= obs.step - rates.raised_at <= obs.cfg.raise_window


def _raise_then(obs: Observation, what: str, evidence: dict[str, Any]) -> Detection:
    rates = obs.rates
    return Detection(HARMFUL_RATE_RAISE.code,
                     f"the rate was raised from {rates.lr_before:.3g} to {rates.lr_after:.3g} at step "
                     f"{rates.raised_at} and {obs.step - rates.raised_at} step(s) later {what}: the raise is "
                     "the cause", {**evidence, "raised_at": rates.raised_at, "lr_before": rates.lr_before,
                                   "lr_after": rates.lr_after, "after_steps": obs.step - rates.raised_at},
                     onset=rates.raised_at)


@detector(HARMFUL_RATE_RAISE, cadence=Cadence.STEP, order=-20, anomaly=True, after_fire=_judged)
def _raise_then_explosion(obs: Observation) -> Detection | None:
    """Asked before TM303 (and TM305's climb): a gradient explosion that TM303 would report right after the
    loop raised the rate is named as the raise's doing. O(1) unless a spike candidate followed a raise."""
    if not _recent_raise(obs) or obs.signals is None:
        return None
    w = obs.monitor.step_window
    if not w.spikes or w.spikes[-1][0] <= max(w.spikes_reported, obs.rates.raised_at - 1):
        return None
    from trainmedic.rules.runtime import judge_gradient_spikes  # TM303's own verdict, not a second one

    live = [sp for sp in w.spikes if sp[0] >= obs.rates.raised_at]
    det = judge_gradient_spikes(live, obs.step, w.losses.values(), w.steps.values(), obs.cfg,
                                obs.signals.clip_bound, w.spikes_reported, obs.memory)
    if det is None:
        return None
    return _raise_then(obs, f"the gradient norm exploded ({det.message})",
                       {"grad_norm": det.evidence.get("grad_norm"), "spike_step": det.evidence.get("spike_step"),
                        "running_median": det.evidence.get("running_median")})


@detector(HARMFUL_RATE_RAISE, cadence=Cadence.NONFINITE, order=-20, anomaly=True, after_fire=_judged)
def _raise_then_nonfinite(obs: Observation) -> Detection | None:
    """Asked before TM301/TM302: the first non-finite step shortly after the loop raised the rate."""
    if not _recent_raise(obs) or obs.signals is None or obs.monitor.consecutive_nonfinite != 1:
        return None
    sig = obs.signals
    if obs.has_scaler and math.isfinite(sig.loss):
        return None  # an overflowing scaled gradient is the scaler's business (TM314)
    what = f"the loss turned {sig.loss}" if not math.isfinite(sig.loss) else "the gradients turned non-finite"
    return _raise_then(obs, what, {"loss": sig.loss})

"""An online learning-rate probe: choose the rate to continue at from evidence, not by halving.

Why online. The same engine serves ``Medic`` (the loop calls ``medic.step(loss)``), ``trainmedic run`` and
the Lightning / Hugging Face callbacks. In the last three trainmedic owns neither the loop nor the data: it
sees each step's loss and gradients before the optimizer step, and it can set the learning rate, skip the
step, or restore a snapshot. So the probe that works everywhere is a range test on the run's *own next
steps*: from a restored snapshot, the rate grows exponentially for at most ``steps`` steps, the loss seen at
each rate is recorded, the test stops early once the loss diverges, and a rate is chosen from the trace. The
engine then restores the snapshot again and continues at the chosen rate (with a linear warmup when the
instability was in the first steps).

This module holds no torch object. :class:`LRProbe` is a small state machine fed one loss per step; it
answers :class:`ProbeStep` (apply this step at this rate) until it answers :class:`ProbeDone` (do not apply
this step: restore the snapshot and continue at ``choice.lr``). :func:`choose_lr` is the decision, a pure
function of the recorded trace, unit-tested on recorded traces.

The engine's part, per step while a probe runs::

    answer = probe.observe(loss_value)        # the loss of this step, before the optimizer step
    if isinstance(answer, ProbeStep):
        set every param group's lr to answer.lr (keeping the groups' ratios); apply the step
    else:                                     # ProbeDone
        do not apply the step; restore the snapshot the probe started from;
        set the lr to answer.choice.lr (with warmup if asked); record answer.choice as the event's reason

The decision
------------
The trace is smoothed and read by :func:`trainmedic.lr_find.suggest` (centered moving average over 0.4
decades, slopes against log10(lr), the dip measured in standard errors of the residual noise). Then, in
this order:

* ``known-good`` - the engine knows a rate the run trained at healthily from this snapshot (the rate in
  force when the snapshot was taken, after at least a snapshot interval at it), below the failing rate,
  and the probe saw no significant rise at or below it: that rate is kept, the probe only confirms it.
  This is the mid-run case (a rate jump, a schedule restart).
* ``minimum/10`` - the curve has a clear valley (``valley_z >= min_z``): a decade below its lowest point,
  or, with ``edge_z`` > 0 (the engine's ``probe_valley_edge_z``, 2, for optimizers with momentum or running
  moments), a decade below the valley's edge (:func:`valley_edge`, the evidence's ``lr_valley_edge``): the
  highest rate after the lowest point up to which the smoothed curve stays within ``edge_z`` standard errors of
  it and no step's loss rose above where the probe started (a spike there is not a flat bottom; round eight,
  part three). Where the bottom is flat, where in it the lowest point falls is noise (as :func:`rise_point` argues
  for the rise): a CNN with momentum probed from a snapshot trained 25 steps at 10x its rate read its lowest
  point at 0.0074 of a bottom flat from there to 0.17 and continued 40x below its tuned rate (round eight).
  Not ``lr_find``'s ``minimum/3``: that rule was calibrated on 100-step tests over 8 decades; in a 36-step
  probe from the initial weights the lowest point sits 2-3x above the best constant rate for plain SGD
  but 5-17x above it for Adam, SGD with momentum and a GRU, and ``minimum/3`` lands 3-8x too high on a CNN
  (``benchmarks/heal_probe_rules.py``; ``benchmarks/HEAL_BASELINE.md``). A decade below is the rule whose
  worst case stays bounded for those optimizers.
* ``minimum/2`` - the same valley, for an optimizer whose step is the rate times this step's gradient
  (plain SGD: no momentum, no running moments; ``valley_divisor=2``). Why the optimizer matters: an
  optimizer with momentum or running moments answers a rate change only over the ~1/(1-beta) steps its
  state takes to catch up, about a decade of a 12-rates-a-decade probe, so the trace's lowest point sits a
  decade further up than the rate that loss belongs to. Plain SGD has no such lag: its lowest point sits
  1.5-2.8x above the best constant rate (regression, 8 seeds x starts at 10x/30x/100x, every probe with a
  clear valley: 1.55-2.81x, median 1.93x; ``benchmarks/heal_continue.py``), so half of it is the best
  rate's own neighbourhood. A decade below lands 3-5x low (minimum/10 worst 1.38x of the tuned loss),
  and ``minimum/3`` (rounds three and four) 0.52-0.94x the tuned rate: with ``minimum/2`` the 11 such
  probes of seeds 0-7 end at 0.94-1.09x the tuned run's loss instead of 0.92-1.23x
  (``HEAL_RESULTS.md``, "Round five").
* ``rise/10`` - no clear valley, but the loss rose significantly (:func:`rise_point`, or the probe stopped
  on divergence) at some rate: a decade below it. Typical of trained weights: flat, then a rise.
* ``ceiling/10`` - neither a valley nor a rise: no evidence either way; a decade below the rate that failed.
* ``no-evidence`` - the loss diverged within the first probe steps: a decade below the lowest rate probed.

Whatever the rule, the chosen rate stays at most ``ceiling / 3`` (the ceiling is the rate that failed, so
a rate near it has already been tried).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainmedic.lr_find import suggest

#: Steps per probe and decades below the ceiling: 12 rates per decade (close to the density ``lr_find``
#: was calibrated with, 100 rates over 8 decades), over the 3 decades below the rate that failed.
DEFAULT_STEPS = 36
DEFAULT_DECADES = 3.0


@dataclass(frozen=True)
class ProbeChoice:
    """The probe's answer: the rate to continue at, the rule that chose it and the evidence."""

    lr: float
    rule: str  # "minimum/10", "minimum/2", "rise/10", "ceiling/10", "known-good", "no-evidence"
    reason: str  # one sentence for the event and the report
    lrs: tuple[float, ...]  # the trace: rate of each probe step ...
    losses: tuple[float, ...]  # ... and the loss seen at it (before the step taken at that rate)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.lrs)

    def as_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "rule": self.rule, "reason": self.reason, "steps": self.steps,
                "lrs": list(self.lrs), "losses": list(self.losses), **self.evidence}


@dataclass(frozen=True)
class ProbeStep:
    """Apply this step at ``lr``."""

    lr: float


@dataclass(frozen=True)
class ProbeDone:
    """Do not apply this step; restore the snapshot the probe started from and continue at ``choice.lr``."""

    choice: ProbeChoice


class LRProbe:
    """Online exponential range test below a rate that failed (no torch inside).

    Args:
        ceiling: the rate that failed (or was judged not to learn); the probe ends at it.
        decades: the probe starts ``decades`` decades below the ceiling.
        steps: the most steps the probe takes (the probe's budget).
        diverge: stop once the last three losses exceed this multiple of the best running mean (or of the
            probe's median loss so far, when that is larger: heavy-tailed batches from trained weights).
        known_good: a rate the run trained at healthily from the same snapshot, if any.
        min_z: a valley shallower than this many standard errors is not trusted (as ``lr_find``).
        valley_divisor: a clear valley's rate is its lowest point over this (2 for plain SGD, else 10).
        edge_z: where > 0, a clear valley's rate is read at its edge rather than its lowest point
            (:func:`valley_edge`, the ``minimum/10`` rule's ``lr_valley_edge``); 0: the lowest point.
    """

    def __init__(self, ceiling: float, *, decades: float = DEFAULT_DECADES, steps: int = DEFAULT_STEPS,
                 diverge: float = 4.0, known_good: float | None = None, min_z: float = 5.0,
                 beta: float = 0.9, valley_divisor: float = 10.0, edge_z: float = 0.0) -> None:
        if not (ceiling > 0 and math.isfinite(ceiling)):
            raise ValueError(f"the probe needs a positive finite ceiling, got {ceiling!r}")
        if steps < 8:
            raise ValueError("a probe needs at least 8 steps to read a curve")
        self.ceiling = float(ceiling)
        self.floor = self.ceiling / 10**decades
        self.steps = int(steps)
        self.diverge = diverge
        self.known_good = known_good
        self.min_z = min_z
        self.beta = beta
        self.valley_divisor = float(valley_divisor)
        self.edge_z = float(edge_z)
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self._avg = 0.0
        self._best = math.inf
        self.choice: ProbeChoice | None = None

    def state_dict(self) -> dict[str, Any]:
        """Plain data: a checkpoint taken while a probe runs resumes it where it was."""
        return {"ceiling": self.ceiling, "floor": self.floor, "steps": self.steps, "diverge": self.diverge,
                "known_good": self.known_good, "min_z": self.min_z, "beta": self.beta,
                "valley_divisor": self.valley_divisor, "edge_z": self.edge_z, "lrs": list(self.lrs),
                "losses": list(self.losses), "avg": self._avg, "best": self._best}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LRProbe:
        decades = math.log10(state["ceiling"] / state["floor"])
        probe = cls(state["ceiling"], decades=decades, steps=state["steps"], diverge=state["diverge"],
                    known_good=state["known_good"], min_z=state["min_z"], beta=state["beta"],
                    valley_divisor=state.get("valley_divisor", 10.0), edge_z=state.get("edge_z", 0.0))
        probe.load_state_dict(state)
        return probe

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.floor = float(state["floor"])
        self.lrs, self.losses = list(state["lrs"]), list(state["losses"])
        self._avg, self._best = float(state["avg"]), float(state["best"])

    def rate(self, i: int) -> float:
        """The rate of probe step ``i`` (exponential from ``floor`` to ``ceiling``)."""
        return self.floor * (self.ceiling / self.floor) ** (i / (self.steps - 1))

    @property
    def done(self) -> bool:
        return self.choice is not None

    def observe(self, loss: float) -> ProbeStep | ProbeDone:
        """Record the loss of the current step; answer what to do with this step."""
        if self.choice is not None:
            return ProbeDone(self.choice)
        i = len(self.lrs)
        lr = self.rate(i)
        loss = float(loss)
        self.lrs.append(lr)
        self.losses.append(loss)
        stop = None
        if not math.isfinite(loss):
            stop = "non-finite loss"
        else:
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            self._best = min(self._best, self._avg / (1 - self.beta ** (i + 1)))
            # Diverged: the last three losses all above `diverge` times the best running mean. Three in a
            # row, not the running mean alone: from trained weights the loss is small and a single noisy
            # batch can be several times the mean without anything having gone wrong.
            # And the reference is at least the median loss of the probe so far: from trained weights the
            # batch losses are heavy-tailed (a CNN at 0.06: batches from 0.01 to 0.25), the running mean of
            # the first few can sit at a lucky low, and three ordinary batches then read as a divergence
            # (digits-cnn, seeds 2/3, a probe after a x30 jump stopped at 0.003 against a healthy 0.03).
            last = self.losses[-3:]
            ref = max(self._best, float(np.median([v for v in self.losses if math.isfinite(v)])))
            if i >= 5 and all(v > self.diverge * ref for v in last):
                stop = f"the last 3 losses exceed {self.diverge:g}x the probe's level {ref:.4g}"
        if stop is None and i + 1 < self.steps:
            return ProbeStep(lr)
        self.choice = choose_lr(self.lrs, self.losses, ceiling=self.ceiling, known_good=self.known_good,
                                min_z=self.min_z, stopped=stop, valley_divisor=self.valley_divisor,
                                edge_z=self.edge_z)
        return ProbeDone(self.choice)


def choose_lr(lrs: list[float], losses: list[float], *, ceiling: float, known_good: float | None = None,
              min_z: float = 5.0, rise_z: float = 4.0, stopped: str | None = None,
              valley_divisor: float = 10.0, edge_z: float = 0.0) -> ProbeChoice:
    """The rate to continue at, from a probe trace (see the module docs for the rules)."""
    lrs = [float(x) for x in lrs]
    losses = [float(x) for x in losses]
    floor = min(lrs) if lrs else ceiling / 10**DEFAULT_DECADES
    cap = ceiling / 3
    n_ok = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    ev: dict[str, Any] = {"ceiling": ceiling, "stopped": stopped, "known_good": known_good}
    trace = (tuple(lrs), tuple(losses))

    def done(lr: float, rule: str, reason: str) -> ProbeChoice:
        lr = min(max(lr, floor / 10 if rule == "no-evidence" else floor), cap)
        return ProbeChoice(lr, rule, reason, *trace, evidence=ev)

    if n_ok < 5:
        # Diverged at once, even at the lowest rates: the probe range was not low enough.
        return done(floor / 10, "no-evidence",
                    f"the loss diverged within {len(lrs)} probe steps from {floor:.3g}; continuing a decade "
                    f"below the lowest rate probed")
    s = suggest(lrs[:n_ok], losses[:n_ok])
    lr_min = s["lr_min_loss"]
    rise = rise_point(lrs[:n_ok], losses[:n_ok], s["smoothed"], z=rise_z)
    if stopped is not None:
        rise = min(rise, lrs[-1]) if rise is not None else lrs[-1]  # the probe stopped on divergence there
    ev.update(valley_z=s["valley_z"], lr_min_loss=lr_min, lr_rise=rise)
    if known_good is not None and known_good < ceiling and (rise is None or rise > known_good):
        where = f"no significant rise up to {lrs[n_ok - 1]:.3g}" if rise is None else f"the loss rose only from {rise:.3g}"
        return done(known_good, "known-good",
                    f"the run trained healthily at {known_good:.3g} from this snapshot, and the probe saw {where}")
    if s["valley_z"] >= min_z and lr_min is not None:
        below = "a decade below it" if valley_divisor == 10 else f"{valley_divisor:g}x below it"
        lowest = f"the loss was lowest at {lr_min:.3g} (a dip of {s['valley_z']:.0f} standard errors)"
        edge = valley_edge(lrs[:n_ok], losses[:n_ok], s["smoothed"], z=edge_z) if edge_z > 0 else None
        if edge is not None and edge > lr_min:
            ev.update(lr_valley_edge=edge)
            return done(edge / valley_divisor, f"minimum/{valley_divisor:g}",
                        f"{lowest} and stayed within {edge_z:g} standard errors of it up to {edge:.3g}; {below}")
        return done(lr_min / valley_divisor, f"minimum/{valley_divisor:g}", f"{lowest}; {below}")
    if rise is not None:
        return done(rise / 10, "rise/10", f"no clear valley; the loss rose from {rise:.3g}; a decade below it")
    return done(ceiling / 10, "ceiling/10",
                f"no clear valley and no rise up to {lrs[n_ok - 1]:.3g}; a decade below the rate that failed")


def _curve(lrs: list[float], losses: list[float], smoothed: list[float]) -> tuple | None:
    """The probe trace as arrays, with the index of its smoothed lowest point and the half-width of the window
    ``suggest()`` smooths over; None for a trace too short or not finite to be read."""
    raw = np.asarray(losses, dtype=float)
    sm = np.asarray(smoothed[: len(raw)], dtype=float)
    if len(raw) < 6 or not np.isfinite(sm).all():
        return None
    per_decade = (len(raw) - 1) / max(math.log10(lrs[-1] / lrs[0]), 1e-12)
    return raw, sm, int(np.argmin(sm)), max(1, int(round(0.4 * per_decade / 2)))


def valley_edge(lrs: list[float], losses: list[float], smoothed: list[float], *, z: float = 2.0) -> float | None:
    """The highest rate after the smoothed curve's lowest point up to which the curve stays within ``z``
    standard errors of that lowest point (the standard error as :func:`trainmedic.lr_find.suggest` measures
    the dip: the residual noise before the minimum over the smoothing window), and at which no single step's
    loss rose above where the probe started (the median of the first third of the smoothed curve, as
    :func:`rise_point` reads it).

    Why the second bound (round eight, part three): the edge assumes a flat bottom, on which the lowest point's
    place is noise. A step whose loss undid all the probe's progress is not on a flat bottom: the rate already
    throws the run back at times, and the smoothed curve looks flat there only because the window averages that
    spike with its neighbours. Adam at 100x on the heal benchmark's classifier (seed 0) probed from its initial
    weights saw, from the lowest point (0.055) on, a step at 1.74 against a start of 1.36; the edge (0.067) lay
    past it, heal continued at 0.0067, 6.7x the tuned rate, and ended 1.27x the tuned run (1.11x at the lowest
    point). In the other 83 probes read at a valley on seeds 0-7 no step from the lowest point to the edge came
    within 0.7 per-step standard deviations of the start level, so the bound changes nothing there. When the
    lowest point itself spiked, the edge is that point: the rule falls back to the lowest point."""
    curve = _curve(lrs, losses, smoothed)
    if curve is None:
        return None
    raw, sm, i_min, half = curve
    noise = float(np.std((raw - sm)[: i_min + 1])) if i_min > 0 else 0.0
    se = noise / math.sqrt(2 * half + 1)
    start = float(np.median(sm[: max(2, len(sm) // 3)]))
    if raw[i_min] > start:
        return float(lrs[i_min])
    j = i_min
    while j + 1 < len(sm) and sm[j + 1] <= sm[i_min] + z * se and raw[j + 1] <= start:
        j += 1
    return float(lrs[j])


def rise_point(lrs: list[float], losses: list[float], smoothed: list[float], *, z: float = 4.0) -> float | None:
    """The first rate after the curve's lowest point where the smoothed loss is significantly worse than
    where the probe started: above the starting level (the median of the first third of the smoothed
    curve) by ``z`` standard errors of the smoothed curve, and above the lowest point by half the progress
    made down to it. None when the curve never rose that far.

    Judging against the starting level rather than the lowest point matters on the flat traces that trained
    weights give: the lowest point of a flat noisy curve is itself a downward excursion of the noise, and
    a rise measured from it would be noise too.
    """
    curve = _curve(lrs, losses, smoothed)
    if curve is None:
        return None
    raw, sm, i_min, half = curve
    # Per-step noise from first differences (robust to the rise itself, not shrunk by the smoothing), and
    # the standard error of the noisiest smoothed point: the ends of the curve average only half+1 losses.
    d = np.diff(raw)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)
    se = sigma / math.sqrt(half + 1)
    start = float(np.median(sm[: max(2, len(sm) // 3)]))
    threshold = max(start + z * se, sm[i_min] + 0.5 * (start - sm[i_min]))
    up = np.nonzero(sm[i_min:] > threshold)[0]
    return float(lrs[i_min + int(up[0])]) if len(up) else None


__all__ = ["DEFAULT_DECADES", "DEFAULT_STEPS", "LRProbe", "ProbeChoice", "ProbeDone", "ProbeStep", "choose_lr", "rise_point"]

"""Heal's hold on the learning rate between two findings: the probe in progress and the warmup after it.

After a rollback the rate to continue at is chosen by evidence (issue 12): the run's next steps, from the
restored snapshot, are a short exponential range test below the rate that failed
(:class:`~trainmedic.heal.lr_probe.LRProbe`); once it has seen enough, the snapshot is restored again and
the run continues at the rate the probe supports. When the trouble began in the first steps (the run
started unstable), it continues with a linear warmup to that rate instead (practitioner note 002).

Plain data, no torch: :class:`~trainmedic.heal.policy.Policy` asks this object what each step's rate
should be and turns the answers into verdicts; budgets (``max_probes``, ``probe_steps``) are counted here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe, ProbeChoice, ProbeDone, ProbeStep

#: The probe replay (plain SGD, :mod:`trainmedic.heal.probe_replay`): the rates replayed are the highest rate
#: the probe's curve supports times these. Only lower: a rate above what the curve supports is never tried.
#: Measured offline (``benchmarks/heal_replay.py``, regression, seeds 0-7 x starts 10x/30x/100x): the probe's
#: single read ended within 1.1x of the tuned run in 20/24 cases (worst 1.15x), the replay's pick among
#: these three in 24/24 (worst 1.08x); five factors (1, 0.7, 0.5, 0.35, 0.25) did worse (23/24, 1.17x).
REPLAY_FACTORS = (1.0, 0.5, 0.25)
#: Replayed losses within this fraction of the best are ties, and ties go to the lower rate: a 36-batch
#: replay from the first steps can favour the higher rate (it gets down faster), while the continuation runs
#: for hundreds of steps at the rate, where a rate near the edge of stability ends on a higher noise floor.
#: The evidence is thin: offline the picks were the same at tolerances 0, 0.02 and 0.05 but for one case
#: (x30 seed 3, from rise/2), where at 0.02 ties to the higher rate ended 1.37x the tuned run, to the lower 1.03x.
#: The score is the late replay loss, not the copies' loss after training on the same batches: that one
#: picked a rate 2.8x the tuned one once (2.35x the tuned run's loss at the end).
REPLAY_TOLERANCE = 0.02
#: Where the curve only rose, the highest rate replayed is the rise point over this. Not the valley's 2: the
#: rise point sits above where a valley's lowest point would be, and from rise/2 the replay tried rates up
#: to 6.8x the tuned one (diverged) and 3.1x; once its pick ended 1.37x the tuned run. Offline
#: (``benchmarks/heal_replay.py``, 24 cases) rise/3: 24/24 within 1.1x (worst 1.08x), rise/2: 23/24 (1.105x).
REPLAY_RISE_DIVISOR = 3.0


def replay_rates(choice: ProbeChoice) -> list[float]:
    """The rates a probe replay compares, high to low; none when the probe read no curve to replay around.

    The highest is what the curve supports: a clear valley's rate as the probe chose it (``minimum/2``),
    or, when the curve only rose, the rise point over :data:`REPLAY_RISE_DIVISOR` (the probe's own
    ``rise/10`` allows for the lag of momentum and running moments, which plain SGD does not have; on the
    regression task it lands 3-10x below the tuned rate). Never above the probe's cap (the failed rate / 3)."""
    ceiling = choice.evidence.get("ceiling")
    if choice.rule.startswith("minimum/"):
        top = choice.lr
    elif choice.rule == "rise/10" and choice.evidence.get("lr_rise") and ceiling:
        top = min(float(choice.evidence["lr_rise"]) / REPLAY_RISE_DIVISOR, float(ceiling) / 3)
    else:  # known-good, ceiling/10, no-evidence: nothing read from a curve
        return []
    return [top * f for f in REPLAY_FACTORS]


def pick(rates: list[float], losses: list[float], tolerance: float = REPLAY_TOLERANCE) -> int | None:
    """Index of the rate to continue at: the lowest whose replayed loss is within ``tolerance`` of the best
    (``rates`` run high to low). None when no replay ended finite."""
    finite = [(i, v) for i, v in enumerate(losses) if math.isfinite(v)]
    if not finite:
        return None
    best = min(v for _, v in finite)
    return max(i for i, v in finite if v <= best + tolerance * abs(best))


def thin_ramp(ramp: list[Any], keep: int, keep_first: bool) -> list[Any]:
    """The ramp copies kept along a probe: the ``keep`` latest; with ``keep_first`` (a replay may choose a
    rate below the latest copies' rates) the first copy and the ``keep - 1`` latest, so a low rate still
    continues from the ramp rather than from the snapshot and a warmup. Memory stays ``keep`` copies."""
    if len(ramp) <= keep:
        return ramp
    if keep_first and keep > 1:
        return [ramp[0], *ramp[-(keep - 1):]]
    return ramp[-keep:]


@dataclass
class ProbeSession:
    """A probe in progress: from which snapshot, why, and what failed."""

    probe: LRProbe
    to_step: int  # the snapshot the probe started from, restored again when it is done
    reason: str  # the code of the finding that started it
    early: bool  # the trouble began in the first steps: warm up to the chosen rate
    lr_before: float  # the rate that failed
    started: int  # the step the rollback happened at

    def state_dict(self) -> dict[str, Any]:
        return {"probe": self.probe.state_dict(), "to_step": self.to_step, "reason": self.reason,
                "early": self.early, "lr_before": self.lr_before, "started": self.started}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProbeSession:
        return cls(LRProbe.from_state(state["probe"]), int(state["to_step"]), state["reason"],
                   bool(state["early"]), float(state["lr_before"]), int(state["started"]))


class Steering:
    """The probe and the warmup, with their budgets."""

    def __init__(self, cfg: Thresholds, direct_steps: bool = False, momentum_steps: bool = False) -> None:
        self.cfg = cfg
        # plain SGD: its step follows the rate at once, so the probe's valley is read 2x below, not 10x
        self.valley_divisor = 2.0 if direct_steps else 10.0
        self.direct_steps = direct_steps  # and its state is its weights alone: a probe's ramp can be kept
        self.momentum_steps = momentum_steps  # SGD with momentum: weights and a buffer, the ramp can be kept too
        self.session: ProbeSession | None = None
        #: the probe replay (:class:`~trainmedic.heal.probe_replay.ProbeReplay`, set for plain SGD once it has a
        #: loss to replay): ``replay(to_step, rates)`` -> each rate's replayed loss, or None
        self.replay: Callable[[int, list[float]], list[float] | None] | None = None
        self.warm: tuple[int, float] | None = None  # (warmup step reached, the rate it climbs to)
        self.probes = 0
        self.probe_steps = 0
        self.chosen: float | None = None  # the rate the last probe chose (:meth:`chose`)

    @property
    def probing(self) -> bool:
        return self.session is not None

    def can_probe(self) -> bool:
        return self.cfg.probe_steps > 0 and self.probes < self.cfg.max_probes

    # -- the probe ------------------------------------------------------------------------------------
    def start(self, *, to_step: int, ceiling: float, known_good: float | None, reason: str, early: bool,
              step: int) -> float:
        """Begin a probe below ``ceiling`` from the snapshot ``to_step``; returns the first rate to set."""
        # the valley's edge for optimizers with momentum or running moments (minimum/10); plain SGD's minimum/2
        # and its replay were calibrated on the lowest point itself (HEAL_RESULTS.md, round eight)
        edge_z = 0.0 if self.direct_steps else self.cfg.probe_valley_edge_z
        probe = LRProbe(ceiling, steps=max(8, self.cfg.probe_steps), known_good=known_good,
                        valley_divisor=self.valley_divisor, edge_z=edge_z)
        self.session = ProbeSession(probe, to_step, reason, early, ceiling, step)
        self.probes += 1
        self.warm = None
        return probe.rate(0)

    def observe(self, loss: float) -> ProbeStep | ProbeDone:
        """The loss of the current probe step (inf when the step is not finite): apply it at a rate, or done."""
        assert self.session is not None
        answer = self.session.probe.observe(loss)
        self.probe_steps += 1
        return answer

    def rate_after(self, session: ProbeSession, choice: ProbeChoice) -> tuple[float, dict[str, Any]]:
        """The rate to continue at after ``session``'s probe, and what the event adds about it: the probe's
        choice, or the replay's pick among :func:`replay_rates` (never above the highest of them)."""
        rates = replay_rates(choice) if self.replay is not None else []
        losses = self.replay(session.to_step, rates) if rates and self.replay is not None else None
        i = pick(rates, losses) if losses is not None and len(losses) == len(rates) else None
        if losses is None or i is None:
            self.chosen = choice.lr
            return choice.lr, {}
        self.chosen = rates[i]
        return rates[i], {"replay": {"probe_lr": choice.lr, "rates": rates, "losses": losses, "picked": rates[i]}}

    def chose(self, lr: float) -> bool:
        """``lr`` is (within ``raise_factor``) the rate the last probe chose. A run that then does not learn
        (TM317) is not answered by another cut: the probe has just measured that lower rates learn more slowly,
        and a cut below its choice, repeated at each TM317, spirals the rate down. A weight-tied LM written
        apart from the rules (``benchmarks/fresh2/tied_lm.py``, seed 1) learned slowly at the probe's 0.002
        and sat near the constant-prediction level; two more cuts took it to 2e-5 and 23 % worse than plain."""
        return self.chosen is not None and lr > 0 and abs(math.log(lr / self.chosen)) < math.log(self.cfg.raise_factor)

    def rewind_rate(self, chosen: float, choice: ProbeChoice) -> float:
        """The highest rate of the probe ramp's copies heal may continue from, after a probe from the first
        steps (:meth:`~trainmedic.heal.policy.Policy._rewind_to`). Plain SGD: the chosen rate (the ramp's state
        there is what a warmup to it leaves). SGD with momentum (``probe_rewind_best``), after a clear valley:
        the valley's lowest point, i.e. the ramp's state at the probe's lowest loss, continued at the chosen
        rate (a decade lower) without a warmup. Why: from the first steps the ramp is the only training the
        restart has had, and the copy at the chosen rate holds none of it (the loss is still at its first
        level there, the momentum lag), while the probe's 36 steps and the 50-step warmup are a large share of
        a short run. Measured (``HEAL_RESULTS.md`` round seven, digits-cnn, seeds 4-7): the mean of the last
        three evaluations came 1.58x the tuned run's (geometric mean), not 1.83x. A momentum probe with no
        clear valley keeps the restored snapshot and the warmup (0.0: no copy qualifies)."""
        if not self.momentum_steps:
            return chosen
        if not (self.cfg.probe_rewind_best and choice.rule.startswith("minimum/")):
            return 0.0
        return max(chosen, float(choice.evidence.get("lr_min_loss") or chosen))

    def finish(self) -> ProbeSession:
        session, self.session = self.session, None
        assert session is not None
        return session

    # -- the warmup -----------------------------------------------------------------------------------
    def begin_warmup(self, target: float) -> float:
        """Warm up linearly to ``target`` over ``heal_warmup_steps`` steps; returns the first step's rate."""
        n = self.cfg.heal_warmup_steps
        if n <= 1:
            return target
        self.warm = (1, target)
        return target / n

    def pace(self) -> float | None:
        """The rate this step runs at while warming up (None: no warmup in progress)."""
        if self.warm is None:
            return None
        k, target = self.warm
        n = self.cfg.heal_warmup_steps
        k += 1
        self.warm = (k, target) if k < n else None
        return target * k / n

    def scale_warmup(self, factor: float) -> None:
        """Heal lowered the rate during a warmup (a plateau cut): the warmup climbs to the lower rate."""
        if self.warm is not None:
            self.warm = (self.warm[0], self.warm[1] * factor)

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"session": self.session.state_dict() if self.session else None,
                "warm": list(self.warm) if self.warm else None, "probes": self.probes,
                "probe_steps": self.probe_steps, "chosen": self.chosen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.session = ProbeSession.from_state(state["session"]) if state.get("session") else None
        warm = state.get("warm")
        self.warm = (int(warm[0]), float(warm[1])) if warm else None
        self.probes = int(state.get("probes", 0))
        self.probe_steps = int(state.get("probe_steps", 0))
        self.chosen = state.get("chosen")


def probe_event(session: ProbeSession, choice: Any, lr_after: float, warmup: int) -> dict[str, Any]:
    """The action event of a finished probe: what was probed, what it saw, and why this rate."""
    lrs = [x for x in choice.lrs if math.isfinite(x)]
    return {"action": "probe", "reason": session.reason, "to_step": session.to_step,
            "lr_before": session.lr_before, "lr_after": lr_after, "rule": choice.rule, "why": choice.reason,
            "probe_steps": choice.steps, "probed": [min(lrs), max(lrs)] if lrs else [],
            "warmup_steps": warmup, "trace": [[a, b] for a, b in zip(choice.lrs, choice.losses)]}

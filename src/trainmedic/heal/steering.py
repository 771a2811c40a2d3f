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
from dataclasses import dataclass
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.heal.lr_probe import LRProbe, ProbeDone, ProbeStep


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

    def __init__(self, cfg: Thresholds, direct_steps: bool = False) -> None:
        self.cfg = cfg
        # plain SGD: its step follows the rate at once, so the probe's valley is read 2x below, not 10x
        self.valley_divisor = 2.0 if direct_steps else 10.0
        self.direct_steps = direct_steps  # and its state is its weights alone: a probe's ramp can be kept
        self.session: ProbeSession | None = None
        self.warm: tuple[int, float] | None = None  # (warmup step reached, the rate it climbs to)
        self.probes = 0
        self.probe_steps = 0

    @property
    def probing(self) -> bool:
        return self.session is not None

    def can_probe(self) -> bool:
        return self.cfg.probe_steps > 0 and self.probes < self.cfg.max_probes

    # -- the probe ------------------------------------------------------------------------------------
    def start(self, *, to_step: int, ceiling: float, known_good: float | None, reason: str, early: bool,
              step: int) -> float:
        """Begin a probe below ``ceiling`` from the snapshot ``to_step``; returns the first rate to set."""
        probe = LRProbe(ceiling, steps=max(8, self.cfg.probe_steps), known_good=known_good,
                        valley_divisor=self.valley_divisor)
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
                "probe_steps": self.probe_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.session = ProbeSession.from_state(state["session"]) if state.get("session") else None
        warm = state.get("warm")
        self.warm = (int(warm[0]), float(warm[1])) if warm else None
        self.probes = int(state.get("probes", 0))
        self.probe_steps = int(state.get("probe_steps", 0))


def probe_event(session: ProbeSession, choice: Any, lr_after: float, warmup: int) -> dict[str, Any]:
    """The action event of a finished probe: what was probed, what it saw, and why this rate."""
    lrs = [x for x in choice.lrs if math.isfinite(x)]
    return {"action": "probe", "reason": session.reason, "to_step": session.to_step,
            "lr_before": session.lr_before, "lr_after": lr_after, "rule": choice.rule, "why": choice.reason,
            "probe_steps": choice.steps, "probed": [min(lrs), max(lrs)] if lrs else [],
            "warmup_steps": warmup, "trace": [[a, b] for a, b in zip(choice.lrs, choice.losses)]}

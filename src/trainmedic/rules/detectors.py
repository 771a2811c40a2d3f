"""The detector registry: each run-time detector is registered with its rule(s) and its cadence.

A detector is a pure function of an :class:`Observation` (the step's signals, the running statistics of
:class:`~trainmedic.signals.monitor.Monitor`, the thresholds) returning a :class:`Detection`, a list of
them, or None. The engine (:mod:`trainmedic.engine`) runs the registered detectors of a cadence when it
comes round, in ``order``; it never needs to know a detector by name. Adding a rule is: declare the rule
with its docs (``rules.registry.rule``), write its detector here-style with ``@detector(...)`` beside it,
and test it — nothing else changes.

Cadences (cheap to expensive):

* ``EVERY``: every step, finite or not (stale gradients, TM310);
* ``NONFINITE``: a step whose loss or gradients are NaN/Inf (TM301, TM302, TM314);
* ``STEP``: every finite step, O(1) (exploding gradients, TM303);
* ``WINDOW``: every ``check_every`` steps, on the recent window (divergence and loss spikes);
* ``SLOW``: every ``slow_check_every`` steps (oscillation, vanishing gradients, stalled updates...);
* ``EPOCH``: at each evaluation, ``end_epoch`` (plateau, overfitting);
* ``ACTIVATIONS``: when a sampled forward pass brought activation statistics (dead ReLUs, TM311).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainmedic.config import Thresholds
from trainmedic.rules.registry import Rule
from trainmedic.signals.monitor import Monitor
from trainmedic.signals.step import StepSignals


class Cadence(enum.Enum):
    EVERY = "every step"
    NONFINITE = "on a non-finite step"
    STEP = "every finite step"
    WINDOW = "every check_every steps"
    SLOW = "every slow_check_every steps"
    EPOCH = "at each evaluation"
    ACTIVATIONS = "on sampled activations"


@dataclass
class Detection:
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    onset: int | None = None  # the step at which the problem began, when it is earlier than detection
    key: str | None = None  # dedupe key when one code can name several distinct problems (per layer...)


@dataclass
class Observation:
    """Everything a detector may read. Plain data only: the engine builds it, detectors never mutate it."""

    step: int
    cfg: Thresholds
    monitor: Monitor
    signals: StepSignals | None = None
    layers: Sequence[str] = ()  # names of the watched parameters, aligned with ``signals.norms``
    scale: float | None = None  # the GradScaler's scale, when there is one
    has_scaler: bool = False
    has_val: bool = False  # the evaluation carried a validation value (not only the training loss)
    plateau_scheduler: bool = False  # the user's ReduceLROnPlateau already answers plateaus
    activations: dict[str, float] = field(default_factory=dict)  # ReLU layer -> share of dead units
    rates: Any = None  # the engine's learning-rate record (rules.learning.RateWatch): raises by the loop
    levels: Any = None  # the targets' constant-prediction level (signals.levels.TargetLevels)
    memory: int = 0  # steps one gradient keeps moving the weights: the optimizer's momentum (signals.stepping)
    final: bool = False  # the last judgment of a phase that ended before the slow window (Engine.end_phase)


Result = Detection | Sequence[Detection] | None


@dataclass(frozen=True)
class Detector:
    """A registered detector. The flags say what the engine does when it fires, so that no detector
    needs the engine's internals:

    * ``anomaly``: marks the step as anomalous (heal takes no snapshot for ``snapshot_every`` steps);
    * ``quiet``: after firing, the detector is not asked again for that many steps (a function of the
      thresholds);
    * ``after_fire``: bookkeeping on the running statistics once its finding is recorded (e.g. plateau
      restarts its count, a reported spike rebases the window so it is counted once);
    * ``exclusive``: later exclusive detectors of the same pass are skipped once this one fired;
    * ``needs_warmup``: silent until ``warmup_steps`` finite steps were seen;
    * ``once``: runs until it has run once with enough data (it returns None to wait);
    * ``curve``: reads the loss as a curve to minimise, so it stays silent while several optimizers step in
      turn (a GAN's players, an actor and its critic: signals/players.py). Their losses are moves in a
      game; heal never rolls one player back on the basis of such a rule.
    """

    name: str
    rules: tuple[Rule, ...]
    cadence: Cadence
    fn: Callable[[Observation], Result]
    order: int = 0
    anomaly: bool = False
    quiet: Callable[[Thresholds], int] | None = None
    after_fire: Callable[[Monitor, Observation], None] | None = None
    exclusive: bool = False
    needs_warmup: bool = True
    once: bool = False
    curve: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.rules)

    def run(self, obs: Observation) -> list[Detection] | None:
        """The detections; None when the detector had too little data to judge (``once`` waits then)."""
        if self.curve and obs.monitor.players >= 2:
            return None
        out = self.fn(obs)
        if out is None:
            return None
        return [out] if isinstance(out, Detection) else list(out)


DETECTORS: list[Detector] = []
_BY_CADENCE: dict[Cadence, list[Detector]] = {}  # filled once every rule module is imported


def detector(*rules: Rule, cadence: Cadence, order: int = 0, **flags: Any) -> Callable[[Callable], Callable]:
    """Register the decorated function as the detector of ``rules`` at ``cadence``."""

    def register(fn: Callable[[Observation], Result]) -> Callable[[Observation], Result]:
        name = fn.__name__.removeprefix("_").replace("_", "-")
        if any(d.name == name for d in DETECTORS):
            raise ValueError(f"detector {name} registered twice")
        DETECTORS.append(Detector(name, tuple(rules), cadence, fn, order, **flags))
        _BY_CADENCE.clear()
        return fn

    return register


def detectors_for(cadence: Cadence) -> list[Detector]:
    """The detectors of a cadence in their order (the engine asks at every step: cached)."""
    if not _BY_CADENCE:
        from trainmedic.rules.registry import all_rules

        all_rules()  # importing the rule modules registers their detectors
        for c in Cadence:
            _BY_CADENCE[c] = sorted((d for d in DETECTORS if d.cadence is c), key=lambda d: d.order)
    return _BY_CADENCE[cadence]


def cadence_of(code: str) -> list[Cadence]:
    """The cadences at which a rule is checked (for ``trainmedic explain`` and the docs)."""
    from trainmedic.rules.registry import all_rules

    all_rules()
    return [d.cadence for d in DETECTORS if code in d.codes]

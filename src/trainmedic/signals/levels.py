"""The constant-prediction level: the loss of the best prediction that ignores the input.

A network that learned nothing from its inputs can still learn the targets' marginal distribution: the
class frequencies, the mean target. The loss of that best constant prediction is the level a run sits at
when its rate is far too high, its weights are crushed by weight decay, or its labels carry no signal
(TM317), and it is known from the targets alone, for the loss in use:

* cross-entropy / NLL: the entropy of the class frequencies;
* binary cross-entropy (on logits or probabilities): the binary entropy of the mean target, per output
  column (soft targets included: the loss is linear in the target);
* mean squared error: the targets' variance, per output column (population variance: the best constant
  is the mean);
* Poisson NLL without the Stirling term, written on the log-rate (``exp(z) - y z``) or on the rate
  (``r - y log(r + eps)``): ``m - m log m`` per column with ``m`` the mean count.

Beside it, the *start* level: the loss of the neutral output a freshly initialised network produces
(logits near 0, predictions of unit variance): ``log K`` for ``K`` classes, ``log 2`` for a binary output,
the mean squared target plus 1 for a regression, 1 for a Poisson rate (log-rate 0). A first loss orders of magnitude
above it means the network starts far from neutral (an init of the wrong scale: ``rules/levels.py``).

And, where the sampled step also showed the prediction, the *input gain*: the loss of the batch's mean
prediction minus the prediction's own loss on that batch. About zero when the network predicts the same
for every row (it learned nothing from its inputs, whatever its loss), clearly positive once it uses
them, however weakly: this is what separates a run pinned at the constant level from a healthy one
passing by it on a hard task (TM317, ``rules/levels.py``).

All are multiplied by the constant factor between the loss node and the loss the engine sees
(``loss / accumulation_steps``). Targets arrive as plain statistics of the batches the live checks look
at (:mod:`trainmedic.observe.levels`); the running sums here are plain data, in the engine's
``state_dict()``. A run whose loss changes form (another loss function, another factor) has no level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("classes", "binary", "squared", "poisson")
MAX_COLUMNS = 4096
MAX_GAINS = 8  # wider targets are pooled into one column (a bound of the per-column level)


@dataclass
class TargetLevels:
    """Running statistics of the targets the loss saw, and the levels they imply (see the module docstring)."""

    kind: str = ""  # one of KINDS; "" before the first sample, "mixed" when the loss changed form
    factor: float = 1.0
    n: int = 0  # rows (binary, squared, poisson) or targets (classes) seen
    classes: int = 0  # logit columns of a classifier (its neutral output's loss is log(classes))
    counts: dict[int, int] = field(default_factory=dict)  # class -> count
    mean: list[float] = field(default_factory=list)  # per column
    m2: list[float] = field(default_factory=list)  # per column sum of squared deviations (Chan/Welford)
    batches: int = 0
    input_rms: float = 0.0  # the largest root mean square of the model's (floating-point) input in the samples
    #: [step, gain] of the latest samples that had the prediction: the loss of the batch's mean prediction
    #: minus the prediction's own, in the engine's units (about 0: the output ignores the input)
    gains: list[list[float]] = field(default_factory=list)

    def add(self, sample: dict[str, Any]) -> None:
        """Merge one batch's statistics: ``{"kind", "factor", "n", "counts" | "mean" (+ "m2"), "classes"}``."""
        kind, factor = sample.get("kind"), float(sample.get("factor", 1.0))
        if kind not in KINDS or self.kind == "mixed":
            return
        if self.kind and (kind != self.kind or not math.isclose(factor, self.factor, rel_tol=1e-6)):
            self.kind = "mixed"  # a loss of another form: no single level describes the run
            return
        self.kind, self.factor = kind, factor
        self.batches += 1
        rms = sample.get("input_rms")
        self.input_rms = max(self.input_rms, float(rms)) if rms is not None and math.isfinite(rms) else self.input_rms
        gain = sample.get("gain")
        if gain is not None and math.isfinite(gain):
            self.gains = [*self.gains[-(MAX_GAINS - 1):], [int(sample.get("step", -1)), float(gain) * factor]]
        if kind == "classes":
            for c, k in sample["counts"].items():
                self.counts[int(c)] = self.counts.get(int(c), 0) + int(k)
            self.n += int(sample["n"])
            self.classes = max(self.classes, int(sample.get("classes", 0)))
            return
        nb, mb = int(sample["n"]), [float(v) for v in sample["mean"]]
        m2b = [float(v) for v in sample.get("m2", [0.0] * len(mb))]
        if nb <= 0:
            return
        if not self.mean:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        if len(mb) != len(self.mean):
            self.kind = "mixed"
            return
        na, n = self.n, self.n + nb
        for j in range(len(mb)):
            d = mb[j] - self.mean[j]
            self.mean[j] += d * nb / n
            self.m2[j] += m2b[j] + d * d * na * nb / n
        self.n = n

    # -- the levels ------------------------------------------------------------------------------------
    @property
    def value(self) -> float:
        """The loss of the best constant prediction, in the units of the loss the engine sees (NaN: unknown)."""
        if self.kind not in KINDS or self.n <= 0:
            return math.nan
        if self.kind == "classes":
            total = sum(self.counts.values())
            h = -sum(k / total * math.log(k / total) for k in self.counts.values() if k > 0) if total else math.nan
            return h * self.factor
        if self.kind == "binary":
            return self.factor * _mean([_binary_entropy(m) for m in self.mean])
        if self.kind == "squared":
            return self.factor * _mean([v / self.n for v in self.m2])
        return self.factor * _mean([m - m * math.log(m) if m > 0 else 0.0 for m in self.mean])

    @property
    def start(self) -> float:
        """The loss of a neutral output (logits 0, predictions 0), in the engine's units (NaN: unknown).
        Only a regression's needs the targets; the others follow from the loss's form (and the logits' width)."""
        if self.kind not in KINDS or (self.kind == "squared" and self.n <= 0):
            return math.nan
        if self.kind == "classes":
            k = max(self.classes, len(self.counts))
            return math.log(k) * self.factor if k > 1 else math.nan
        if self.kind == "binary":
            return math.log(2) * self.factor
        if self.kind == "squared":  # predictions of unit variance (a sound init's scale), independent of the target
            return self.factor * (_mean([m * m + v / self.n for m, v in zip(self.mean, self.m2)]) + 1.0)
        return self.factor  # a log-rate of 0, rate 1: ``exp(0) - y * 0`` = ``1 - y * log(1)`` = 1 in either form

    def gains_since(self, step: int) -> list[float]:
        """The input gains sampled at or after ``step`` (see ``gains``)."""
        return [g for s, g in self.gains if s >= step]

    def describe(self) -> str:
        """What the best constant prediction is, in words."""
        return {"classes": "the class frequencies", "binary": "the mean target", "squared": "the mean target",
                "poisson": "the mean count"}.get(self.kind, "the targets' marginal")

    def summary(self) -> dict[str, Any]:
        """What the report's meta line shows (JSON-safe)."""
        return {"kind": self.kind, "constant": _finite(self.value), "start": _finite(self.start),
                "factor": self.factor, "batches": self.batches, "input_gains": self.gains}

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["counts"] = {str(k): v for k, v in self.counts.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            if k == "counts":
                v = {int(c): int(n) for c, n in v.items()}
            elif isinstance(v, list):
                v = [list(x) if isinstance(x, list) else x for x in v]
            setattr(self, k, v)


def _binary_entropy(m: float) -> float:
    if m <= 0.0 or m >= 1.0:
        return 0.0
    return -(m * math.log(m) + (1 - m) * math.log(1 - m))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None

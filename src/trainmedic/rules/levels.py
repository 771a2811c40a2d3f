"""What the targets' levels tell (signals/levels.py): started wrong (TM205) and pinned at the constant (TM317).

**Started wrong**: a first loss orders of magnitude above what a neutral output would cost (TM205).

A freshly initialised network with a sound init produces near-neutral outputs: logits of a few tenths,
regression outputs of about unit variance. Its first loss is then close to the loss of that neutral
output, which the targets tell (:class:`~trainmedic.signals.levels.TargetLevels.start`): ``log K`` for
``K`` classes, ``log 2`` for a binary output, the mean squared target plus 1 for a regression, 1 for a
Poisson rate. Weights drawn from N(0, 1) multiply the output's scale by about ``sqrt(fan_in)`` per layer:
a small MLP starts with logits in the tens and a first loss ten to a thousand times the neutral one. The
run may still train, only worse and slower, and no curve rule sees it (the loss starts high and falls).
It is TM205's business (poor init): the depth check of pre-flight compares the layers with each other,
this one compares the output with the loss, so it also sees a network whose every layer is uniformly too
large. Inputs far from standardized (RMS above `started_wrong_input_rms`) blow the output up as well;
that is TM108's finding, not an init's, and this check stays silent then.

**Pinned at the constant level**: :func:`at_constant_level`, TM317's second reference (called from its
detector in ``rules/learning.py``): the loss of the best constant prediction, below the first loss.

Both are pure: they read the step window and the engine's target levels.
"""

from __future__ import annotations

import math

import numpy as np

from trainmedic.heal import progress
from trainmedic.rules.detectors import Cadence, Detection, Observation, detector
from trainmedic.rules.wiring import POOR_INIT


def started_wrong(first: float, start: float, factor: float) -> dict[str, float] | None:
    """The evidence when ``first`` is more than ``factor`` times the neutral output's loss ``start``."""
    if not (math.isfinite(first) and math.isfinite(start) and start > 0):
        return None
    if first <= factor * start:
        return None
    return {"first_loss": first, "neutral_loss": start, "ratio": first / start}


@detector(POOR_INIT, cadence=Cadence.STEP, order=1, needs_warmup=False, once=True)
def _started_wrong(obs: Observation) -> Detection | list[Detection] | None:
    levels, w = obs.levels, obs.monitor.step_window
    if levels is None or not w.initial_parts:
        return None  # nothing to judge yet
    if levels.batches == 0:
        # the targets were not seen on the first step (a front end that hands over nothing): give up
        return [] if obs.step >= 3 else None
    ev = started_wrong(float(w.initial_parts[0]), levels.start, obs.cfg.started_wrong_factor)
    if ev is None or levels.input_rms > obs.cfg.started_wrong_input_rms:
        return []  # judged once: started near the neutral level, or unscaled inputs explain it (TM108's business)
    what = {"classes": f"log {max(levels.classes, len(levels.counts))} classes",
            "binary": "log 2, logits at 0", "squared": "the mean squared target + 1, unit-variance predictions",
            "poisson": "a rate of 1, log-rate 0"}.get(levels.kind, "")
    return Detection(POOR_INIT.code,
                     f"the first loss {ev['first_loss']:.4g} is {ev['ratio']:.0f}x the loss of a neutral output "
                     f"({ev['neutral_loss']:.4g}: {what}): the network starts with outputs far too large, an "
                     "initialisation of the wrong scale (weights drawn with std 1 instead of ~1/sqrt(fan_in))",
                     {**ev, "measure": "first loss / neutral output's loss", "loss_kind": levels.kind,
                      "constant_level": levels.value},
                     onset=0, key="TM205:output-scale")


def window_before(obs: Observation) -> np.ndarray | None:
    """The ``not_learning_window`` losses before the window TM317 judges, where the ring still holds them and
    they were trained at the same rate (else None): whether a climbing window follows one that already sat
    at the no-learning level (:func:`~trainmedic.heal.progress.not_learning`)."""
    n = obs.cfg.not_learning_window
    losses = obs.monitor.step_window.losses.values()
    if len(losses) < 2 * n or (obs.rates is not None and obs.rates.steady < 2 * n):
        return None
    return losses[-2 * n:-n]


def at_constant_level(obs: Observation, losses: np.ndarray, first: float) -> Detection | None:
    """The second reference of TM317: the loss of the best constant prediction (signals/levels.py), where
    the targets tell it and it lies clearly below the first loss. A network that learned the class
    frequencies or the mean target and nothing else sits there, below where it started; so does a healthy
    network for a while, on its way to learning from its inputs. What tells them apart is read, not
    waited for: the sampled predictions of the window no longer depend on the input (the batch's mean
    prediction does as well as the predictions themselves, within `level_gain` of the level)."""
    cfg, levels = obs.cfg, obs.levels
    constant = levels.value if levels is not None else math.nan
    if not (math.isfinite(constant) and 0 < constant < first * (1 - cfg.not_learning_margin)):
        return None
    v = progress.not_learning(losses, reference=constant, window=cfg.not_learning_window,
                              margin=cfg.level_margin, before=window_before(obs))
    if v is None or v.evidence["level"] > constant * (1 + cfg.level_band):
        return None
    gains = levels.gains_since(obs.step - cfg.not_learning_window)
    if not gains or max(abs(g) for g in gains) > cfg.level_gain * constant:
        return None  # no sample of the predictions in the window, or they still follow the input
    return Detection("TM317",
                     f"{v.message}; that is the loss of the best constant prediction ({levels.describe()}: "
                     f"{constant:.4g}), below the first loss {first:.4g}, and the predictions no longer depend on "
                     f"the input (the batch's mean prediction does as well, within {max(abs(g) for g in gains):.2g})",
                     {**v.evidence, "first_loss": first, "constant_level": constant, "input_gains": gains,
                      "loss_kind": levels.kind},
                     onset=obs.step - cfg.not_learning_window)


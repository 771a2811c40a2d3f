"""The rate audit (TM343) on a run whose learning rate a scheduler sets: when its replays are sound.

The audit (:mod:`trainmedic.heal.rate_audit`) trains copies at the current rate and at 1/3 and 1/10 of it
over ``passes x train_batches`` replayed steps. Under a scheduler three things change.

**When it runs.** The rates the run's last ``train + held`` steps took (the span the replayed batches come
from) and the rate its next step will take are compared; the audit waits for a later evaluation (it stays
due, as when it lacks batches) where

* they spread by more than :data:`SPREAD` (max over min): a warmup's climb, a steep decay, a step
  scheduler's drop between the replayed batches and the next step. 25 % is small next to the 3x between
  the rates the copies compare; the fresh ``digits_resnet`` (warmup + cosine per batch over 132 steps)
  spreads 1.12x over the 24 steps before its second evaluation (step 44), where it is audited;
* they rose by more than :data:`RISE` from the first of them to the next: a warmup still climbing (a
  ``OneCycleLR`` in its first 30 %). The rate audited there is not the rate the schedule is heading to.

**What the copies replay.** A decaying schedule will lower the rate before the run ends, and the held loss
after a replay at a constant rate mostly measures the noise floor that decay removes: on the test
classifier (``tests/test_rate_audit_schedule.py``: AdamW, warmup + cosine over 192 steps, where 1e-2
ends best, 0.534-0.536) the constant replay found lower rates 5-10 % better at 1e-2 in two of three seeds
(ratios 0.952, 0.897), and acting on it ended at 0.60-0.71. So under a scheduler each copy's rate falls
linearly to 0 over the replay (``anneal``): the comparison is between the places each rate leads to once
annealed. Measured ratios (best lower rate over the rate's, the gain bar unchanged at 4.5 %): the
classifier at 1e-3, 3e-3 and 1e-2 (seeds 0-2) 1.046-1.172, at 3e-2 0.976-0.994 (no action: it ends
0.60-0.65 plain, 3x above the best rate), at 6e-2 0.916; the fresh ``digits_resnet`` at its own rate 1.19,
at 30x 0.842, at 300x 0.65. ``ReduceLROnPlateau`` holds the rate between evaluations: its replays stay
constant, as without a scheduler.

**What heal does.** The restart keeps the scheduler where it is: the weights and the optimizer's state go
back to the initial snapshot, every rate and the scheduler's base rates are multiplied by the lower rate
that won (``Rollback.keep_schedule``, :meth:`RateAnswer._restart_schedule`), and nothing else: no probe and
no warmup of heal's own, which set absolute rates each step while the scheduler sets the next from its base
rates. Measured on the fresh ``digits_resnet`` at 300x (AdamW 0.9; plain: validation error 0.076, 0.038
at the script's rate): the probe-and-warmup restart (``Medic`` before this module) ended at 0.330 (its
probe and warmup took steps 44-130 of 132); a restart that also rewound the schedule to its step 0 at
0.060 (the run ended before the schedule's decay); a cut to 1/10 keeping the weights at 0.181; this
restart at 0.038 under ``trainmedic run --heal`` and 0.040 under ``Medic``. The fallback cut (``rate_audit_restart=False``, a late evaluation, no budget) scales the base rates
the same way (:meth:`~trainmedic.heal.actions.Actuator.scale_lr`), so either survives the schedule's later
steps.

Refused (a TM904 says so, as before for every scheduler): a scheduler whose rates a cut would not scale
(``CyclicLR``: its cycle's bounds live in ``max_lrs``, outside the optimizer's groups; an object that is
not a ``torch.optim.lr_scheduler.LRScheduler``, which sets the rate from values trainmedic does not know).
Under ``trainmedic run`` a scheduler is known from its constructor, whose first ``step()`` goes through the
wrapped step (``tests/test_run_rate_audit.py``: a StepLR stepped once an epoch is known at the first
evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

#: the most the rates of the replayed span and the next step may spread (max / min) for the constant replay
SPREAD = 1.25
#: the most the rate may have risen from the first replayed step to the next step (a warmup still climbing)
RISE = 1.05


def schedule_refusal(scheduler: Any) -> str | None:
    """Why a cut would not survive ``scheduler``'s next steps (the audit steps aside), or None."""
    sched = torch.optim.lr_scheduler
    if isinstance(scheduler, sched.CyclicLR):
        return "a CyclicLR scheduler sets the rate from bounds a rate cut does not scale (max_lrs)"
    known = (sched.LRScheduler, sched.ReduceLROnPlateau)
    if not isinstance(scheduler, known):
        return f"a learning-rate scheduler trainmedic cannot scale ({type(scheduler).__name__}) sets the rate"
    return None


def schedule_moves(rates: Sequence[float], current: float) -> str | None:
    """Why the rate moves too much for a constant replay (the audit waits), or None. ``rates``: the rates the
    replayed steps took, oldest first; ``current``: the rate of the next step."""
    seen = [r for r in (*rates, current) if r > 0]
    if not seen:
        return None
    lo, hi = min(seen), max(seen)
    if hi > SPREAD * lo:
        return f"the scheduler moved the rate from {lo:.3g} to {hi:.3g} over the replayed steps"
    if rates and rates[0] > 0 and current > RISE * rates[0]:
        return f"the scheduler is raising the rate ({rates[0]:.3g} -> {current:.3g})"
    return None

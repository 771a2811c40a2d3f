"""The shape of a sudden rise in the loss: a jump (TM306) or a climb (TM305).

A learning rate too high for where the run is makes the loss grow step after step, each step's increase
larger than the last (the error is multiplied at every step): a climb, TM305 divergence, and the rate is
the likely cause. A loss thrown up in one step that then moves on from the new level, by less each step,
had something happen at that step (a warm restart or a manual change of the rate, a shift in the data, a
bad batch): a jump, TM306 loss-spike (issue 11: a jump that stays up was called a divergence with the
rate "the likely cause"). Heal does the same for both (roll back, probe the rate); the name and the
onset are what change.

Pure functions on the last few per-step losses.
"""

from __future__ import annotations

import numpy as np

#: a jump: the first increase is at least this share of the whole rise, and every later one is smaller.
#: Any accelerating rise (geometric growth with a ratio above 1) gives its first step less than a third.
JUMP_SHARE = 0.5


def is_jump(losses: np.ndarray) -> bool:
    """``losses``: the strictly rising last few losses (the step before the rise first). A jump when the
    first increase carries most of the rise and the increases shrink after it."""
    d = np.diff(np.asarray(losses, dtype=float))
    if len(d) < 2 or not np.all(d > 0) or not np.all(np.isfinite(d)):
        return False
    return bool(d[0] >= JUMP_SHARE * d.sum() and np.all(d[1:] < d[0]))

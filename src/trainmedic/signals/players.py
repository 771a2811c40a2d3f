"""How many optimizers in this process are stepping in turn right now? (a game, not a loss to minimise)

A GAN's discriminator and generator, an actor and its critic: several optimizers step alternately, each on
a loss computed from the other's current outputs. Such a loss is not a curve to minimise; it rises when the
other player improves. The curve-shape rules (TM305 divergence and its early forms, TM306 loss spike,
TM308 plateau, TM309 overfitting) then have nothing to judge, and heal must never roll one player back on
their basis. The honest signal used here needs no guess about the losses: in the last ``RECENT`` optimizer
steps of the process, counted from the owner's own first step among them, at least two different
collectors (one per optimizer) stepped, each at least twice, interleaved. Two optimizers used one after the
other (a teacher, then its student; pre-training, then fine-tuning) alternate only for the few steps around
the switch; a Medic started after a game (or beside Medics nobody closed) is not a player of it.
"""

from __future__ import annotations

from collections import deque

RECENT = 16

_order: deque[int] = deque(maxlen=RECENT)  # which collector took each of the process's recent steps


def stepped(owner: int) -> int:
    """Note a step of the optimizer watched by ``owner`` (an id); return the number of players now
    stepping in turn (1: a single loss being minimised)."""
    _order.append(owner)
    # Judged from the owner's own first step in the window on: optimizers that alternated before this one
    # began (a game that ended, another test's Medics) do not make its first steps a game.
    recent = list(_order)[list(_order).index(owner):]
    if len(recent) < 4:
        return 1
    counts: dict[int, int] = {}
    for o in recent:
        counts[o] = counts.get(o, 0) + 1
    if len(counts) < 2:
        return 1
    switches = sum(1 for a, b in zip(recent, recent[1:]) if a != b)
    players = sum(1 for c in counts.values() if c >= 2)
    return players if players >= 2 and switches >= 3 else 1


def forget(owner: int) -> None:
    """A collector detached: its past steps no longer make anyone a player."""
    kept = [o for o in _order if o != owner]
    _order.clear()
    _order.extend(kept)

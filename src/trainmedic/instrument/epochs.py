"""Where does an epoch end, and what was its validation loss? Inferred for ``trainmedic run``.

A script run under ``trainmedic run`` never calls ``end_epoch``. The signs that an evaluation happened:

* losses computed without gradient between training steps (``torch.no_grad`` validation): their
  size-weighted mean, once training resumes, is the epoch's validation loss;
* ``ReduceLROnPlateau.step(val)`` or ``trainmedic.log(val_loss=...)``: an explicit value (from then on the
  inferred ones are ignored);
* the training ``DataLoader`` starting over: an epoch ended (closed with the training loss alone when the
  run reports no validation values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class EpochTracker:
    """Calls ``close_epoch(val_loss=..., val_metric=..., higher_is_better=...)`` when an epoch ends."""

    def __init__(self, close_epoch: Callable[..., None]) -> None:
        self.close_epoch = close_epoch
        self.val_sum: torch.Tensor | float = 0.0
        self.val_n = 0
        self.explicit = False
        self.seen_val = False
        self.steps_since_epoch = 0
        self.last_loader: Any = None
        self.train_loader: Any = None

    def eval_loss(self, value: torch.Tensor, rows: int) -> None:
        """A scalar loss computed without gradient: part of an evaluation (unless values are explicit)."""
        if self.explicit:
            return
        self.val_sum = self.val_sum + value.detach().float() * rows
        self.val_n += rows

    def training_step(self) -> None:
        """A training step is about to run: an evaluation seen since the last one closes an epoch."""
        if self.val_n:
            self.flush()
        if self.train_loader is None and self.last_loader is not None:
            self.train_loader = self.last_loader
        self.steps_since_epoch += 1

    def loader_started(self, loader: Any) -> None:
        self.last_loader = loader
        if loader is self.train_loader and self.steps_since_epoch > 0 and not self.explicit:
            self.flush(always=True)  # the training loader starts again: a new epoch

    def explicit_value(self, **kwargs: Any) -> None:
        """``trainmedic.log`` or ``ReduceLROnPlateau.step(val)``: close the epoch with this value."""
        self.explicit = True
        self.val_sum, self.val_n = 0.0, 0
        self._close(**kwargs)

    def flush(self, always: bool = False) -> None:
        """Close an epoch with the pending evaluation losses; with ``always``, also without any, unless this
        run reports validation values (then an epoch without one would mix training losses in)."""
        if self.val_n:
            val = float(self.val_sum / self.val_n)
            self.val_sum, self.val_n = 0.0, 0
            self.seen_val = True
            self._close(val_loss=val)
        elif always and not self.seen_val and not self.explicit:
            self._close()

    def finish(self) -> None:
        """The script ended: close the last epoch."""
        if self.val_n or self.steps_since_epoch > 0:
            self.flush(always=True)

    @property
    def reports_validation(self) -> bool:
        """The run reports validation values (epochs without one are not closed on the training loss)."""
        return self.seen_val or self.explicit

    def new_phase(self) -> None:
        """A new training phase (a new optimizer, see :mod:`~trainmedic.instrument.phases`) takes its first
        step: its training loader, and whether and how it validates, are learnt afresh."""
        self.train_loader = self.last_loader
        self.seen_val = self.explicit = False
        self.steps_since_epoch = 1

    def _close(self, **kwargs: Any) -> None:
        self.steps_since_epoch = 0
        self.close_epoch(**kwargs)

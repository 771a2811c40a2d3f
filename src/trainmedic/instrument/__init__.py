"""Zero-code instrumentation for ``trainmedic run`` (see :mod:`trainmedic.instrument.session`)."""

from __future__ import annotations

from typing import Any

from trainmedic.instrument.session import Session, active_session


def log(val_loss: Any = None, val_metric: Any = None, *, higher_is_better: bool = True) -> None:
    """Tell ``trainmedic run`` an evaluation result; closes an epoch (plateau TM308, overfitting TM309).

    The one line a script may add for ``run``::

        trainmedic.log(val_loss=val_loss)

    Without ``trainmedic run`` (plain ``python train.py``) it does nothing, so the line can stay. Once a
    script calls it, validation losses are no longer inferred from losses computed without gradient.
    """
    session = active_session()
    if session is not None:
        session.log(val_loss=val_loss, val_metric=val_metric, higher_is_better=higher_is_better)


__all__ = ["Session", "active_session", "log"]

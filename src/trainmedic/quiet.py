"""Keeping trainmedic's own checks off the script's stderr without disturbing the script's warnings.

The checks call the user's model and loss (pre-flight replays, the live checks of the first steps,
forensics), which may warn. ``warnings.catch_warnings()`` with an ``ignore`` filter would hide those, but
entering and leaving it marks the filter list as changed, and CPython then forgets which warnings each
module has already shown: a script's once-per-location warning (the ``default`` action, e.g. ``mse_loss``'s
broadcast warning) would be printed again after every checked step. :func:`silenced` puts an ``ignore``
filter at the front of the list in place and takes it out again, which changes what is shown inside and
nothing outside.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

_IGNORE_ALL = ("ignore", None, Warning, None, 0)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Drop every warning raised inside; the script's record of warnings already shown is kept."""
    warnings.filters.insert(0, _IGNORE_ALL)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # the script replaced the list inside: nothing to take out
            warnings.filters.remove(_IGNORE_ALL)

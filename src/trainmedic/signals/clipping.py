"""Does the script clip its own gradients, and to what bound? (TM303 judges a spike against it.)

A script that calls ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` (or ``clip_grad_value_``, or
Lightning's ``gradient_clip_val``, which calls them) has already bounded every step: a gradient norm far
above its running median but within the script's own bound is the behaviour the author chose, not an
explosion. PyTorch offers no hook on these functions, so while at least one collector watches, the two
functions of ``torch.nn.utils`` are wrapped: the wrapper calls the original with the same arguments and
returns its result unchanged, and notes the bound against the parameters it was given (no device sync:
only the Python bound is kept). The wrapping is removed when the last collector detaches. A script that
imported the function by name before trainmedic was set up (``from torch.nn.utils import
clip_grad_norm_`` above a ``Medic(...)``) is not seen; ``trainmedic run`` installs before the script runs.

The fact is sticky: once a parameter was clipped, the run is taken to clip it (Lightning clips after the
optimizer-step hook trainmedic reads the gradients in, so the first step is judged without it).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

_users = 0
_originals: dict[str, Callable[..., Any]] = {}
_bounds: dict[int, tuple[weakref.ref, float]] = {}  # id(parameter) -> (its weak reference, norm bound)


def _as_list(parameters: Any) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        return [parameters]
    return list(parameters)


def _note(params: Sequence[torch.Tensor], bound: float) -> None:
    for p in params:
        if isinstance(p, torch.Tensor):
            try:
                _bounds[id(p)] = (weakref.ref(p), bound)
            except TypeError:  # not weak-referenceable: skip rather than risk a stale id
                pass


def _wrap_norm(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def clip_grad_norm_(parameters: Any, max_norm: Any, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return original(parameters, max_norm, *args, **kwargs)
        params = _as_list(parameters)
        out = original(params, max_norm, *args, **kwargs)
        try:
            _note(params, float(max_norm))
        except (TypeError, ValueError, RuntimeError):
            pass
        return out

    return clip_grad_norm_


def _wrap_value(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def clip_grad_value_(parameters: Any, clip_value: Any, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            return original(parameters, clip_value, *args, **kwargs)
        params = _as_list(parameters)
        out = original(params, clip_value, *args, **kwargs)
        try:  # every element within +-v: the norm is within v * sqrt(number of elements)
            n = sum(p.numel() for p in params if isinstance(p, torch.Tensor))
            _note(params, float(clip_value) * math.sqrt(max(n, 1)))
        except (TypeError, ValueError, RuntimeError):
            pass
        return out

    return clip_grad_value_


def watch() -> None:
    """Start noting clip calls (reference-counted: one call per collector)."""
    global _users
    _users += 1
    if _users > 1:
        return
    utils = torch.nn.utils
    for name, wrap in (("clip_grad_norm_", _wrap_norm), ("clip_grad_value_", _wrap_value)):
        original = getattr(utils, name, None)
        if original is None:
            continue
        _originals[name] = original
        setattr(utils, name, wrap(original))


def watchers() -> int:
    """How many collectors watch the clip calls now (0: torch.nn.utils holds its own functions)."""
    return _users


def unwatch() -> None:
    """Stop noting clip calls when the last collector detaches; the original functions are put back."""
    global _users
    if _users == 0:
        return
    _users -= 1
    if _users:
        return
    for name, original in _originals.items():
        setattr(torch.nn.utils, name, original)
    _originals.clear()
    _bounds.clear()


def bound_for(params: Sequence[torch.Tensor]) -> float | None:
    """The norm bound the script clips these parameters to (the smallest noted), or None."""
    if not _bounds:
        return None
    found = None
    for p in params:
        entry = _bounds.get(id(p))
        if entry is not None and entry[0]() is p:
            found = entry[1] if found is None else min(found, entry[1])
    return found

"""Installing and removing wrappers on PyTorch's classes and modules, in one place.

``trainmedic run`` wraps a handful of PyTorch entry points where no public hook exists (``Tensor.backward``,
the functional losses, ``GradScaler.step``, ``LRScheduler.step``, ``DataLoader.__iter__``). Every wrapper is
recorded here and removed on :meth:`Patches.remove`, which puts back exactly what was there: an attribute
the class only inherited is deleted again rather than pinned.

Inside code that TorchDynamo is compiling (``torch.compiler.is_compiling()``, public API) a wrapper calls the
original and nothing else: dynamo then sees plain PyTorch, with no trainmedic state to trace, no graph break
and no warning (see :mod:`~trainmedic.instrument.compiled`).

A warning the original raises names the line that called it (``warnings.warn(..., stacklevel=2)``, e.g.
``mse_loss``'s broadcast warning): behind a wrapper that line would be trainmedic's. The wrapper therefore
calls the original through a one-line frame that carries the caller's file, line and globals
(:func:`call_at`): the warning names the script's line, is filtered by the script's module name and is shown
once per location by the script's own registry, as without trainmedic (Python 3.11 has no
``skip_file_prefixes``). The runner leaves that frame (named :data:`CALL_SITE`) out of the tracebacks it
prints, with trainmedic's own frames.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import torch

#: the name of the frame through which a wrapper calls the original (tracebacks leave it out)
CALL_SITE = "<trainmedic call site>"
# one line, so the frame's line is the caller's line whatever the code object's first line is set to
_TRAMPOLINE = next(c for c in compile("def t(fn, a, k): return fn(*a, **k)", "<trainmedic>", "exec").co_consts
                   if isinstance(c, types.CodeType))
_sites: dict[tuple[Any, int], Callable[..., Any]] = {}


def call_at(frame: types.FrameType | None, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` called from a frame that looks, to ``warnings``, like ``frame``'s line."""
    if frame is None:
        return fn(*args, **kwargs)
    key = (frame.f_code, frame.f_lineno)
    site = _sites.get(key)
    if site is None:
        if len(_sites) > 4096:  # call sites are few; a bound keeps a generated-code loop from growing it
            _sites.clear()
        code = _TRAMPOLINE.replace(co_filename=frame.f_code.co_filename, co_firstlineno=frame.f_lineno,
                                   co_name=CALL_SITE, co_qualname=CALL_SITE)
        site = _sites[key] = types.FunctionType(code, frame.f_globals)
    return site(fn, args, kwargs)


class Patches:
    def __init__(self) -> None:
        self._patches: list[tuple[Any, str, Any]] = []
        self.handles: list[Any] = []  # hook handles (``.remove()``) registered along with the wrappers

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` by ``make(original)``."""
        own = not isinstance(owner, type) or name in owner.__dict__
        original = getattr(owner, name)
        caller = threading.local()  # the frame that called the wrapper, per thread (wrappers nest)

        def at_call_site(*args: Any, **kwargs: Any) -> Any:
            return call_at(getattr(caller, "frame", None), original, args, kwargs)

        functools.update_wrapper(at_call_site, original)
        inner = make(at_call_site)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if torch.compiler.is_compiling():
                return original(*args, **kwargs)
            outer = getattr(caller, "frame", None)
            caller.frame = sys._getframe(1)
            try:
                return inner(*args, **kwargs)
            finally:
                caller.frame = outer

        functools.update_wrapper(wrapper, original)
        setattr(owner, name, wrapper)
        self._patches.append((owner, name, original if own else None))

    def remove(self) -> None:
        for owner, name, original in reversed(self._patches):
            if original is None:
                delattr(owner, name)  # it was inherited: remove the wrapper, the base's attribute shows again
            else:
                setattr(owner, name, original)
        self._patches.clear()
        for h in self.handles:
            h.remove()
        self.handles.clear()


def recording_scale(original: Callable[..., Any], record: Callable[[torch.Tensor, torch.Tensor], None]
                    ) -> Callable[..., Any]:
    """A ``GradScaler.scale`` that hands ``(scaled loss, loss)`` to ``record``: ``backward()`` is then called
    on the scaled loss, and whoever watches it reads the loss the script computed."""

    def scale(scaler: Any, outputs: Any) -> Any:
        result = original(scaler, outputs)
        if isinstance(outputs, torch.Tensor) and isinstance(result, torch.Tensor) and outputs.numel() == 1:
            record(result, outputs)
        return result

    return scale

"""Installing and removing wrappers on PyTorch's classes and modules, in one place.

``trainmedic run`` wraps a handful of PyTorch entry points where no public hook exists (``Tensor.backward``,
the functional losses, ``GradScaler.step``, ``LRScheduler.step``, ``DataLoader.__iter__``). Every wrapper is
recorded here and removed on :meth:`Patches.remove`, which puts back exactly what was there: an attribute
the class only inherited is deleted again rather than pinned.

Inside code that TorchDynamo is compiling (``torch.compiler.is_compiling()``, public API) a wrapper calls the
original and nothing else: dynamo then sees plain PyTorch, with no trainmedic state to trace, no graph break
and no warning (see :mod:`~trainmedic.instrument.compiled`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch


class Patches:
    def __init__(self) -> None:
        self._patches: list[tuple[Any, str, Any]] = []
        self.handles: list[Any] = []  # hook handles (``.remove()``) registered along with the wrappers

    def wrap(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` by ``make(original)``."""
        own = not isinstance(owner, type) or name in owner.__dict__
        original = getattr(owner, name)
        inner = make(original)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if torch.compiler.is_compiling():
                return original(*args, **kwargs)
            return inner(*args, **kwargs)

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

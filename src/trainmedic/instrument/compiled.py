"""What the script compiled with ``torch.compile``, so ``trainmedic run`` keeps its hooks out of compiled code.

TorchDynamo traces Python hooks into the graphs it compiles: a global module hook seen by dynamo raised an
``AssertionError`` through a script that trains fine under plain python, a hook added to a compiled module
after its first call makes it recompile, and a hook that reads a number breaks the graph with a warning on
the script's stderr. ``torch.compile(module)`` also warns on every call while a global module hook exists.

So ``trainmedic run`` notes each ``torch.compile`` call (``model.compile()`` goes through it too) and then:

* removes its global module hook (model discovery) before the compiled code first runs;
* puts no hook on a module whose own call runs compiled (``model.compile()``, or the module inside
  ``torch.compile(model)``); the ``OptimizedModule`` that ``torch.compile(model)`` returns runs eagerly and
  may carry one;
* steps aside, with an info finding (TM904), for checks that need hooks inside compiled code (the sampled
  dead-ReLU check, TM311); pre-flight and forensics replay the uncompiled module (``_orig_mod``) eagerly.

Every wrapper and hook body also returns straight away when ``torch.compiler.is_compiling()`` (public API):
dynamo then traces nothing of trainmedic (:mod:`~trainmedic.instrument.patches`).
"""

from __future__ import annotations

from typing import Any

import torch

from trainmedic.instrument.discovery import unwrap


class CompiledCode:
    """The modules and functions the script compiled."""

    def __init__(self) -> None:
        self.roots: list[torch.nn.Module] = []  # modules whose own call runs compiled
        self.functions: list[str] = []  # other compiled callables (a training step, a loss): contents unknown

    @property
    def any(self) -> bool:
        return bool(self.roots or self.functions)

    def saw(self, target: Any, result: Any) -> None:
        """``result = torch.compile(target, ...)`` ran."""
        owner = getattr(target, "__self__", None)
        if isinstance(target, torch.nn.Module):
            inner = unwrap(result) if isinstance(result, torch.nn.Module) else target
            self.roots.append(inner)
        elif isinstance(owner, torch.nn.Module):  # model.compile() compiles the module's bound call
            self.roots.append(owner)
        elif target is None:  # @torch.compile(mode=...): the decorator it returns calls torch.compile(fn)
            return
        else:
            self.functions.append(getattr(target, "__qualname__", type(target).__name__))

    def _inside(self) -> set[int]:
        return {id(m) for root in self.roots for m in root.modules()}

    def hooks_traced(self, module: torch.nn.Module) -> bool:
        """Would a hook on ``module`` itself run inside compiled code? (Unknown for compiled functions: yes.)"""
        return bool(self.functions) or id(module) in self._inside()

    def runs_compiled(self, model: torch.nn.Module) -> bool:
        """Does any module of ``model`` run inside compiled code?"""
        if self.functions:
            return True
        inside = self._inside()
        return any(id(m) in inside for m in model.modules())

    def describe(self) -> str:
        parts = [f"{type(m).__name__} module" for m in self.roots] + [f"function {f}" for f in self.functions]
        return ", ".join(parts)

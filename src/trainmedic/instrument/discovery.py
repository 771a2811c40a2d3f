"""Which module does an optimizer train? Model discovery for the hook-driven front ends.

``trainmedic run`` never sees ``model = Net()``: it sees modules called in training forward passes and
optimizers stepping. :func:`model_for` pairs them up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch


class ParamHolder(torch.nn.Module):
    """Stands for "the model" when no module seen in a forward pass holds all of an optimizer's parameters.

    It registers the very same Parameter objects, so snapshots and rollbacks act on the live weights.
    """

    def __init__(self, params: list[torch.nn.Parameter], names: list[str]) -> None:
        super().__init__()
        used: set[str] = set()
        for i, (p, name) in enumerate(zip(params, names)):
            key = re.sub(r"\W", "_", name) or f"param{i}"
            if key in used or hasattr(self, key):
                key = f"{key}_{i}"
            used.add(key)
            self.register_parameter(key, p)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel / DataParallel / torch.compile wrappers -> the module they train."""
    for _ in range(4):
        inner = getattr(module, "module", None) or getattr(module, "_orig_mod", None)
        if isinstance(inner, torch.nn.Module):
            module = inner
        else:
            break
    return module


def model_for(optimizer: torch.optim.Optimizer, seen: list[torch.nn.Module]) -> torch.nn.Module:
    """The module an optimizer trains, chosen among the modules seen in training forward passes.

    The outermost modules (those no other seen module contains) are candidates; the one that holds most
    of the optimizer's parameters, and the fewest others, wins. When none holds all of them, a
    :class:`ParamHolder` of the optimizer's parameters (named where a seen module names them) is used.
    """
    wanted = [p for g in optimizer.param_groups for p in g["params"] if isinstance(p, torch.Tensor)]
    ids = {id(p) for p in wanted}
    inner: set[int] = set()
    for m in seen:
        for sub in m.modules():
            if sub is not m:
                inner.add(id(sub))
    roots: list[torch.nn.Module] = []
    for m in seen:
        if id(m) in inner:
            continue
        m = unwrap(m)
        if all(m is not r for r in roots):
            roots.append(m)
    best, best_key = None, None
    names: dict[int, str] = {}
    for m in roots:
        own = {id(p): n for n, p in m.named_parameters()}
        cover = len(ids & own.keys())
        if cover == 0:
            continue
        for k, n in own.items():
            names.setdefault(k, n)
        key = (cover, -len(own))
        if best_key is None or key > best_key:
            best, best_key = m, key
    if best is not None and best_key is not None and best_key[0] == len(ids):
        return best
    return ParamHolder(wanted, [names.get(id(p), f"param{i}") for i, p in enumerate(wanted)])


class ModelDiscovery:
    """The modules called in training forward passes until the first optimizer step (a global forward
    pre-hook, removed then), and afterwards the latest training input of the model that was found."""

    def __init__(self, busy: Callable[[], bool]) -> None:
        self.busy = busy  # trainmedic's own forward passes are not the script's
        self.last_input: Any = None
        self._seen: dict[int, torch.nn.Module] = {}
        self._discover: Any = None
        self._inputs: Any = None

    def start(self) -> None:
        from torch.nn.modules.module import register_module_forward_pre_hook

        def seen(module: torch.nn.Module, args: Any) -> None:
            if torch.is_grad_enabled() and not self.busy() and len(self._seen) < 10_000:
                self._seen.setdefault(id(module), module)

        self._discover = register_module_forward_pre_hook(seen)

    def modules(self) -> list[torch.nn.Module]:
        return list(self._seen.values())

    def stop(self) -> None:
        if self._discover is not None:
            self._discover.remove()
            self._discover = None

    def watch_inputs(self, model: torch.nn.Module) -> None:
        """Keep a reference to the model's latest training input (no copy), for the checks of a step."""
        outer = [m for m in self._seen.values() if unwrap(m) is model] or [model]

        def keep(module: torch.nn.Module, args: Any) -> None:
            if torch.is_grad_enabled():
                self.last_input = args

        if isinstance(model, torch.nn.Module) and any(True for _ in model.parameters()):
            self._inputs = outer[0].register_forward_pre_hook(keep)

    def remove(self) -> None:
        self.stop()
        if self._inputs is not None:
            self._inputs.remove()
            self._inputs = None

"""Which module does an optimizer train? Model discovery for the hook-driven front ends.

``trainmedic run`` never sees ``model = Net()``: it sees modules called in training forward passes and
optimizers stepping. :func:`model_for` pairs them up.
"""

from __future__ import annotations

import re
import sys

import torch


class ParamHolder(torch.nn.Module):
    """Stands for "the model" when no module seen in a forward pass holds all of an optimizer's parameters.

    It holds the very same tensor objects, so snapshots and rollbacks act on the live weights. That includes
    plain tensors (``w = torch.zeros(3, requires_grad=True)``; ``torch.optim.SGD([w, b])``), which
    ``register_parameter`` refuses: wrapping them in a new ``nn.Parameter`` would make another tensor object
    whose ``.grad`` never fills, so they go into this module's own parameter table as they are.
    ``parameters()``, ``state_dict()`` and ``load_state_dict()`` treat them like parameters.
    """

    def __init__(self, params: list[torch.Tensor], names: list[str]) -> None:
        super().__init__()
        used: set[str] = set()
        for i, (p, name) in enumerate(zip(params, names)):
            key = re.sub(r"\W", "_", name) or f"param{i}"
            if key in used or hasattr(self, key):
                key = f"{key}_{i}"
            used.add(key)
            if isinstance(p, torch.nn.Parameter):
                self.register_parameter(key, p)
            else:
                self._parameters[key] = p  # the live tensor itself (see the class docstring)


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
    for k, n in script_names(ids - names.keys()).items():
        names.setdefault(k, n)
    return ParamHolder(wanted, [names.get(id(p), f"param{i}") for i, p in enumerate(wanted)])


def script_names(ids: set[int]) -> dict[int, str]:
    """The names the script's own globals give these tensors (``w``, ``b`` in ``SGD([w, b], lr=0.1)``), so a
    finding about a plain tensor names it as the script does."""
    main = sys.modules.get("__main__")
    found: dict[int, str] = {}
    if main is None or not ids:
        return found
    for name, value in list(vars(main).items()):
        if isinstance(value, torch.Tensor) and id(value) in ids and not name.startswith("_"):
            found.setdefault(id(value), name)
    return found

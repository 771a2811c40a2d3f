"""Replaying a batch without disturbing the run: the batch convention, isolation, and the op watcher.

Pre-flight checks and forensics both replay one batch through the model (and the loss) while watching
every torch operation. This module holds what they share:

* the batch convention: ``batch = (inputs, target)`` or ``(inputs, target, indices)``; ``inputs`` is a
  tensor (``model(x)``), a tuple or list (``model(*x)``) or a dict (``model(**x)``); ``indices`` are the
  rows' dataset indices (see :class:`trainmedic.WithIndex`). The loss is ``loss_fn(model(inputs), target)``.
* :func:`isolated`: a context in which the user's RNG and the model's buffers (BatchNorm running
  statistics) are saved and restored, so a replay on the real model leaves no trace;
* :class:`OpWatcher`: a ``TorchFunctionMode`` that sees every torch function call with the module that
  made it, and that subclasses specialise (pre-flight checks, the search for the first non-finite op).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_ZOO_DIR = os.path.join(_PKG_DIR, "zoo")
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


# ---------------------------------------------------------------------------------------------------
# the batch convention
# ---------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    inputs: Any
    target: Any
    indices: torch.Tensor | None = None

    @property
    def size(self) -> int | None:
        for t in _tensors(self.inputs):
            if t.dim() > 0:
                return int(t.shape[0])
        if isinstance(self.target, torch.Tensor) and self.target.dim() > 0:
            return int(self.target.shape[0])
        return None

    def select(self, rows: torch.Tensor) -> Batch:
        """The batch restricted to ``rows`` (positions): every tensor whose first dim is the batch size."""
        n = self.size
        return Batch(_index(self.inputs, rows, n), _index(self.target, rows, n),
                     None if self.indices is None else self.indices[rows.to(self.indices.device)])


def split_batch(batch: Any) -> Batch | None:
    """``(inputs, target)`` or ``(inputs, target, indices)`` -> :class:`Batch`; anything else -> None."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, dict):
        keys = {k.lower(): k for k in batch}
        ik = next((keys[k] for k in ("inputs", "input", "x") if k in keys), None)
        tk = next((keys[k] for k in ("target", "targets", "y", "labels", "label") if k in keys), None)
        if ik is None or tk is None:
            return None
        xk = next((keys[k] for k in ("index", "indices", "idx") if k in keys), None)
        return Batch(batch[ik], batch[tk], _as_indices(batch[xk]) if xk else None)
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        return None
    idx = _as_indices(batch[2]) if len(batch) == 3 else None
    if len(batch) == 3 and idx is None:
        return None
    return Batch(batch[0], batch[1], idx)


def _as_indices(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor) and obj.dim() == 1 and not obj.is_floating_point():
        return obj
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(i, int) for i in obj):
        return torch.tensor(obj)
    return None


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)


def batch_bytes(batch: Batch) -> int:
    """The bytes of the tensors a batch holds (inputs and target): what keeping a reference to it costs."""
    return sum(t.numel() * t.element_size() for part in (batch.inputs, batch.target) for t in _tensors(part))


def _index(obj: Any, rows: torch.Tensor, n: int | None) -> Any:
    if isinstance(obj, torch.Tensor):
        if obj.dim() > 0 and obj.shape[0] == n:
            return obj[rows.to(obj.device)]
        return obj
    if isinstance(obj, tuple):
        return tuple(_index(v, rows, n) for v in obj)
    if isinstance(obj, list):
        return [_index(v, rows, n) for v in obj]
    if isinstance(obj, dict):
        return {k: _index(v, rows, n) for k, v in obj.items()}
    return obj


def row_hash(batch: Batch, row: int) -> str:
    """A short content hash of one row (inputs and target), to name it when no dataset index is known."""
    h = hashlib.sha1()
    for t in (*_tensors(batch.inputs), *_tensors(batch.target)):
        if t.dim() > 0 and batch.size is not None and t.shape[0] == batch.size:
            h.update(t[row].detach().cpu().contiguous().numpy().tobytes())
    return "sha1:" + h.hexdigest()[:12]


def all_finite(obj: Any) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _tensors(obj) if t.is_floating_point() or t.is_complex())


def nonfinite_rows(obj: Any, n: int | None) -> set[int]:
    """Positions of rows that hold NaN/Inf in any tensor of ``obj`` whose first dim is ``n``."""
    rows: set[int] = set()
    for t in _tensors(obj):
        if (t.is_floating_point() or t.is_complex()) and t.dim() > 0 and t.shape[0] == n:
            bad = ~torch.isfinite(t.detach()).reshape(n, -1).all(dim=1)
            rows.update(int(i) for i in torch.nonzero(bad).flatten().tolist())
    return rows


# ---------------------------------------------------------------------------------------------------
# isolation
# ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def isolated(model: torch.nn.Module, *, grad: bool = False, eval_mode: bool = False) -> Iterator[None]:
    """Replay on the real model without leaving a trace: RNG forked, buffers and train/eval flags restored.

    Gradients are off unless ``grad=True`` (then run on a copy instead: ``.grad`` would change).
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda), torch.set_grad_enabled(grad):
            if eval_mode:
                model.eval()
            yield
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)
        for m, training in modes:
            m.training = training


class OwnHook:
    """A hook trainmedic puts on the user's module, which a deep copy of that module carries as a no-op.

    ``copy.deepcopy(model)`` (the replays of pre-flight, forensics, ``lr_find``) copies the module's hook
    dicts, and with a bound-method hook the trainmedic object behind it: its references to the model, the
    optimizer and the tensors it keeps (a sampled step's outputs are part of the autograd graph, and
    deepcopy refuses non-leaf tensors: forensics then failed as TM901 on exactly the non-finite steps it
    exists for). A plain closure is not copied at all, so the copy's forwards reported into the original.
    Wrapped in an ``OwnHook``, the copy gets a hook that does nothing."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> OwnHook:
        return OwnHook(_no_op)


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


def copy_for_replay(model: torch.nn.Module, optimizer: Any = None, extra: Any = None) -> tuple[Any, Any, Any]:
    """Deep copies of (model, optimizer, extra) made together, so the copied optimizer holds the copied
    parameters. ``.grad`` is cleared on the copies."""
    m, o, e = copy.deepcopy((model, optimizer, extra))
    for p in m.parameters():
        p.grad = None
    if isinstance(e, torch.nn.Module):
        for p in e.parameters():
            p.grad = None
    return m, o, e


# ---------------------------------------------------------------------------------------------------
# the op watcher
# ---------------------------------------------------------------------------------------------------
class Abort(Exception):
    """Raised by a watcher to end a replay early (a finding is already recorded)."""


def user_location() -> str | None:
    """``file.py:42`` of the innermost frame outside torch and trainmedic (where the user's code ran)."""
    f = sys._getframe(1)
    while f is not None:
        raw = f.f_code.co_filename
        fn = os.path.abspath(raw)
        ours = fn.startswith(_PKG_DIR) and not fn.startswith(_ZOO_DIR)  # the zoo scripts are user code
        if not (ours or fn.startswith(_TORCH_DIR) or raw.startswith("<") or "contextlib" in fn):
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return None


def op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    return name if name == "__get__" else name.rstrip("_")


_SILENT = frozenset({"_set_grad_enabled", "get", "size", "dim", "numel", "is_floating_point",
                     "is_complex", "data_ptr", "__len__", "__bool__", "__index__", "__format__", "item",
                     "tolist", "__repr__", "__hash__", "stride", "__iter__"})


class OpWatcher(TorchFunctionMode):
    """Sees every torch function call made while active, and the module that made it.

    ``attach(model)`` registers forward pre/post hooks so that ``self.where()`` names the innermost
    module running (``"encoder.2 (Linear)"``); ``self.scope(name)`` marks code outside the model (the
    loss). Subclasses override :meth:`before` and :meth:`after`. Work done inside those methods and in
    hooks is not watched (``self.busy``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.busy = False
        self._handles: list[Any] = []
        self.module_names: dict[int, str] = {}

    # -- where are we ---------------------------------------------------------------------------
    def attach(self, model: torch.nn.Module, prefix: str = "model") -> None:
        for name, mod in model.named_modules():
            label = f"{prefix}.{name}" if name else prefix
            self.module_names[id(mod)] = label
            label = f"{label} ({type(mod).__name__})"

            def pre(_m: Any, _args: Any, label: str = label) -> None:
                self.stack.append(label)

            def post(_m: Any, _args: Any, _out: Any) -> None:
                if self.stack:
                    self.stack.pop()
                if not self.busy:
                    self.busy = True
                    try:
                        self.after_module(_m, _out)
                    finally:
                        self.busy = False

            self._handles.append(mod.register_forward_pre_hook(pre))
            self._handles.append(mod.register_forward_hook(post))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def after_module(self, module: torch.nn.Module, output: Any) -> None:
        """Called after each watched module's forward (inside ``busy``)."""

    @contextlib.contextmanager
    def scope(self, label: str) -> Iterator[None]:
        self.stack.append(label)
        try:
            yield
        finally:
            if self.stack and self.stack[-1] == label:
                self.stack.pop()

    def where(self) -> str:
        return self.stack[-1] if self.stack else "model"

    # -- the mode ---------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.busy:
            return func(*args, **kwargs)
        name = op_name(func)
        if name in _SILENT:
            return func(*args, **kwargs)
        self.busy = True
        try:
            self.before(name, func, args, kwargs)
        finally:
            self.busy = False
        out = func(*args, **kwargs)
        self.busy = True
        try:
            self.after(name, func, args, kwargs, out)
        finally:
            self.busy = False
        return out

    def before(self, name: str, func: Any, args: tuple, kwargs: dict) -> None:
        """Called before the op runs; may raise :class:`Abort`."""

    def after(self, name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        """Called after the op ran; may raise :class:`Abort`."""


def tensor_args(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (tuple, list)):
            out.extend(v for v in a if isinstance(v, torch.Tensor))
    return out


def fmt_shape(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return str(tuple(t.shape))
    return type(t).__name__


def fmt_num(x: float) -> str:
    return f"{x:.3g}"

"""Pre-flight: the wiring checks (TM201-TM208, TM211) run once on one batch, before they cost a run.

    findings = trainmedic.preflight(model, loss_fn, (x, y), optimizer)
    for f in findings:
        print(f)

``preflight`` works on deep copies of the model, the optimizer and the loss (and forks the RNG), so the
user's objects are untouched. It replays ``loss_fn(model(x), y)`` under a ``TorchFunctionMode`` that
sees every torch call with the module that made it, and tags the tensors derived from the prediction
(P) and from the target (T):

* TM201: an elementwise op between a P-only and a T-only tensor whose result is larger than both
  through an implicitly added leading dimension (``(B,1) - (B,)`` -> ``(B,B)``), or an ``nn`` loss whose
  prediction and target broadcast to more elements than either. Broadcasting inside the model, or
  between two P tensors (pairwise losses), or explicit ``[:, None]`` forms are silent by construction.
* TM202/TM203: the inputs of ``cross_entropy``/``nll_loss``/``binary_cross_entropy(_with_logits)``
  checked before the call (a class index out of range would be a device-side assert on a GPU).
* TM204: ``.grad`` after backward, optimizer membership. TM205: output std and weight-gradient RMS of
  the Linear/Conv chain. TM206: sigmoid/tanh inputs. TM207: ReLU units never positive. TM211: the range
  of the op that produced the compared prediction against the target values.
* TM208 (opt-in, or automatic when cheap): fit one small repeated batch with Adam.

``Medic(..., loss_fn=loss_fn)`` runs the cheap part automatically at the first ``medic.step(loss,
batch=(x, y))`` (:class:`PreflightCallback`): a forward-only replay on the real model with its buffers
and RNG restored (autograd on, no backward: TM205 reads the model's heads from the graph), plus the
gradients the user's own backward just produced. No batch, no replay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from trainmedic.callbacks import MedicCallback
from trainmedic.findings import Finding
from trainmedic.quiet import silenced
from trainmedic.replay import (
    Abort,
    Batch,
    OpWatcher,
    _tensors,
    call_model,
    copy_for_replay,
    fmt_num,
    isolated,
    split_batch,
    tensor_args,
    user_location,
)


@dataclass(frozen=True)
class PreflightThresholds:
    """Thresholds of the wiring checks; calibrated on default-initialized MLPs/CNNs (see docs)."""

    poor_init_ratio: float = 10.0  # TM205: std (or grad RMS) max/min across the hidden layers above this ...
    poor_init_per_layer: float = 3.0  # ... and above this per layer (PyTorch's default init: ~2.45x for ReLU)
    poor_init_gain: float = 4.0  # TM205: weight std x sqrt(fan_in) above this in most layers (default init: 0.58,
    #   Kaiming 1.41, DCGAN's N(0, 0.02) <= 1.8; N(0, 1) weights: sqrt(fan_in), 4 at a fan-in of 16) ...
    poor_init_min_fan_in: int = 16  # ... among the weight layers with at least this fan-in
    saturation_abs: float = 5.0  # TM206: |input| of sigmoid/tanh beyond this ...
    saturation_share: float = 0.5  # ... for more than this share of the values
    dead_relu_share: float = 0.7  # TM207: share of units never positive
    dead_relu_min_samples: int = 8  # values per unit needed to call a unit dead
    head_outside_share: float = 0.05  # TM211: share of target values the head cannot produce
    overfit_steps: int = 150  # TM208: Adam steps per learning rate on the repeated batch
    overfit_lrs: tuple[float, ...] = (1e-3, 1e-2)
    overfit_rows: int = 16
    overfit_drop: float = 0.9  # the loss must fall by this share
    overfit_budget_s: float = 3.0  # overfit="auto" runs only when its estimated cost is below this


P, T = "P", "T"
_PO, _TO = frozenset({P}), frozenset({T})

REGRESSION_LOSSES = frozenset({"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"})
PAIR_LOSSES = REGRESSION_LOSSES | {"poisson_nll_loss", "gaussian_nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                                   "kl_div", "soft_margin_loss"}
CLASS_LOSSES = frozenset({"cross_entropy", "nll_loss"})
ELEMENTWISE = frozenset({"sub", "rsub", "add", "radd", "mul", "rmul", "div", "rdiv", "truediv", "rtruediv",
                         "true_divide", "pow", "rpow", "maximum", "minimum", "fmax", "fmin", "eq", "ne", "lt",
                         "le", "gt", "ge", "atan2", "hypot", "xlogy", "fmod", "remainder", "logaddexp",
                         "squared_difference", "floor_divide", "floordiv", "rfloordiv"})
DIFF_OPS = frozenset({"sub", "rsub"})
SHAPE_OPS = frozenset({"view", "reshape", "squeeze", "unsqueeze", "flatten", "contiguous", "to", "float",
                       "double", "half", "bfloat16", "clone", "permute", "transpose", "t", "expand",
                       "expand_as", "view_as", "reshape_as", "__get__", "getitem", "detach", "type", "cpu",
                       "cuda"})
INF = math.inf
HEAD_RANGES: dict[str, tuple[float, float]] = {
    "relu": (0.0, INF), "relu6": (0.0, 6.0), "sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0), "softplus": (0.0, INF), "exp": (0.0, INF), "softmax": (0.0, 1.0),
    "elu": (-1.0, INF), "abs": (0.0, INF), "square": (0.0, INF),
}
LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass
class Issue:
    """A finding before it is bound to a run (code, message, evidence, dedupe key)."""

    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    def finding(self, step: int | None = None) -> Finding:
        return Finding(code=self.code, message=self.message, step=step, evidence=dict(self.evidence))


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _arg(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


class LayerChain:
    """The Linear/Conv layers of a forward pass in call order with their output std (TM205's depth check),
    ``segments``: how many normalization layers ran before each (a normalization resets the scale), and
    ``heads``: which of them feed the model's output directly (see :meth:`mark_heads`)."""

    def __init__(self) -> None:
        self.layers: list[tuple[str, nn.Module, float]] = []
        self.segments: list[int] = []
        self.heads: list[bool] | None = None  # None until mark_heads: then the last layer counts as the head
        self.norms = 0
        self.ids: set[int] = set()
        self._nodes: list[Any] = []  # each layer's output grad_fn, the node mark_heads looks for

    def saw(self, module: nn.Module, output: Any, label: Any) -> None:
        if isinstance(module, NORM_TYPES):
            self.norms += 1
        elif isinstance(module, LAYER_TYPES) and isinstance(output, torch.Tensor) and id(module) not in self.ids \
                and output.numel() > 1:
            self.ids.add(id(module))
            self.layers.append((label(module), module, float(output.detach().float().std())))
            self.segments.append(self.norms)
            self._nodes.append(output.grad_fn)

    def mark_heads(self, output: Any) -> None:
        """Mark as heads the layers the model's output is reached from without another layer in between.

        The head's scale is the loss's business, not the init's, so the depth check leaves it out. The
        last layer called is not always the head: a wide-and-deep model (``deep(x) + wide(x)``, as
        ``fit``'s own MLP) calls its skip layer after the deep stack's head, and a model with two heads
        calls one before the other; judged as a hidden layer, a head of a few outputs reads as activations
        shrinking at init (TM205 on a default-initialized SiLU network). Found by walking the autograd
        graph back from the output and stopping at each layer's output node; without a graph (no grad),
        the last layer stays the head.
        """
        where = {id(n): i for i, n in enumerate(self._nodes) if n is not None}
        roots = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
        if not where or not roots:
            return
        heads = [False] * len(self.layers)
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if id(node) in where:
                heads[where[id(node)]] = True
                continue
            stack.extend(nxt for nxt, _ in getattr(node, "next_functions", ()))
        if any(heads):
            self.heads = heads


class PreflightWatcher(OpWatcher):
    """Records what the wiring checks need during one replay of ``loss_fn(model(x), y)``."""

    def __init__(self, cfg: PreflightThresholds) -> None:
        super().__init__()
        self.cfg = cfg
        self.phase = "model"
        self.labels: dict[int, frozenset[str]] = {}
        self.origin: dict[int, str] = {}  # the op that made a tensor, looking through shape ops
        self.range_of: dict[int, tuple[float, float, str]] = {}
        self.keep: list[torch.Tensor] = []  # tagged tensors stay alive so their ids are not reused
        self.issues: list[Issue] = []
        self.chain = LayerChain()  # Linear/Conv in call order with their output std, and the normalizations
        self.sat: dict[str, dict[str, Any]] = {}
        self.dead: dict[str, dict[str, Any]] = {}
        self._calls: dict[str, int] = {}
        self.traps: dict[int, dict[str, Any]] = {}
        self.meets: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self.where_hint: str | None = None  # the call's location when it was seen earlier (live checks)

    # -- tagging ------------------------------------------------------------------------------------
    def tag(self, t: torch.Tensor, lab: frozenset[str]) -> None:
        self.labels[id(t)] = lab
        self.keep.append(t)

    def label(self, t: Any) -> frozenset[str]:
        return self.labels.get(id(t), frozenset()) if isinstance(t, torch.Tensor) else frozenset()

    def issue(self, code: str, message: str, key: str | None = None, **evidence: Any) -> Issue:
        key = key or code
        for old in self.issues:
            if old.key == key:
                return old
        iss = Issue(code, message, evidence, key)
        self.issues.append(iss)
        return iss

    # -- module hook --------------------------------------------------------------------------------
    layers = property(lambda self: self.chain.layers)
    segments = property(lambda self: self.chain.segments)

    def after_module(self, module: nn.Module, output: Any) -> None:
        if self.phase == "model":
            self.chain.saw(module, output, self.where_label)

    def where_label(self, module: nn.Module) -> str:
        return self.module_names.get(id(module), type(module).__name__)

    # -- before the op: loss inputs -----------------------------------------------------------------
    def before(self, name: str, func: Any, args: tuple, kwargs: dict) -> None:
        if name not in PAIR_LOSSES and name not in CLASS_LOSSES:
            return
        inp, tgt = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "target")
        if not (isinstance(inp, torch.Tensor) and isinstance(tgt, torch.Tensor)):
            return
        if name in CLASS_LOSSES:
            return self._class_loss(name, inp, tgt, kwargs)
        self._pair_loss(name, inp, tgt)
        kl_div_input(self, name, inp)  # nothing for the other pair losses

    def _pair_loss(self, name: str, inp: torch.Tensor, tgt: torch.Tensor) -> None:
        where = self.where_hint or user_location()
        try:
            shape = torch.broadcast_shapes(inp.shape, tgt.shape)
        except RuntimeError:
            shape = None
        bce = name.startswith("binary_cross_entropy")
        if inp.shape != tgt.shape and shape is not None and math.prod(shape) > max(inp.numel(), tgt.numel()):
            self.issue("TM201",
                       f"`F.{name}` got a prediction of shape {tuple(inp.shape)} and a target of shape "
                       f"{tuple(tgt.shape)}: they broadcast to {tuple(shape)}, comparing every prediction "
                       f"with every target" + (f" ({where})" if where else ""),
                       key=f"TM201:{name}", op=name, prediction_shape=tuple(inp.shape),
                       target_shape=tuple(tgt.shape), result_shape=tuple(shape), where=where)
            if bce:
                raise Abort
        elif bce and inp.shape != tgt.shape:
            self.issue("TM203", f"`F.{name}` needs a target of the prediction's shape {tuple(inp.shape)}, "
                       f"got {tuple(tgt.shape)}", key="TM203:shape", op=name,
                       prediction_shape=tuple(inp.shape), target_shape=tuple(tgt.shape))
            raise Abort
        if name in REGRESSION_LOSSES:
            self.meets.append((name, inp, tgt))
        if name == "binary_cross_entropy_with_logits":
            origin = self.origin.get(id(inp))
            if origin == "sigmoid":
                self._probs_into_logits(name, inp, "the output of a sigmoid")
            # The value range is only evidence when the producing op is unknown: raw logits of a linear layer
            # (origin addmm) can all sit in [0, 1] at initialisation (a healthy GAN, two-moons seed 1).
            elif origin is None and inp.numel() >= 16 and inp.is_floating_point() and float(inp.min()) >= 0 \
                    and float(inp.max()) <= 1:
                self._probs_into_logits(name, inp, "values that all lie in [0, 1]")
            if not tgt.is_floating_point():
                self.issue("TM203", f"`F.{name}` needs float targets, got {tgt.dtype}; use y.float()",
                           key="TM203:dtype", op=name, target_dtype=str(tgt.dtype))
                raise Abort
            self._target_01(name, tgt)
        elif name == "binary_cross_entropy":
            origin = self.origin.get(id(inp))
            if origin in ("log_softmax", "log_sigmoid") or (origin == "softmax" and inp.dim() >= 1
                                                              and inp.shape[-1] == 1):
                what = ("log-probabilities from a log_softmax/log_sigmoid" if origin != "softmax" else
                        "a softmax over a single unit, which is always 1")
                self.issue("TM202", f"`F.{name}` (BCELoss) expects probabilities but got {what}: end the model "
                           "with one logit and use BCEWithLogitsLoss", key="TM202:bce", op=name, origin=origin)
                raise Abort
            if inp.is_floating_point() and (float(inp.min()) < 0 or float(inp.max()) > 1):
                self.issue("TM202", f"`F.{name}` (BCELoss) expects probabilities but got values in "
                           f"[{fmt_num(float(inp.min()))}, {fmt_num(float(inp.max()))}]: raw logits; use "
                           "BCEWithLogitsLoss on the logits", key="TM202:bce", op=name,
                           input_min=float(inp.min()), input_max=float(inp.max()))
                raise Abort
            if tgt.is_floating_point():
                self._target_01(name, tgt)

    def _target_01(self, name: str, tgt: torch.Tensor) -> None:
        lo, hi = float(tgt.min()), float(tgt.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            self.issue("TM203", f"`F.{name}` needs targets in [0, 1], got values in [{fmt_num(lo)}, {fmt_num(hi)}]"
                       " (labels {-1, 1} or {1, 2}?); map them to 0/1", key="TM203:range01", op=name,
                       target_min=lo, target_max=hi)

    def _probs_into_logits(self, name: str, inp: torch.Tensor, what: str) -> None:
        self.issue("TM202", f"`F.{name}` applies the sigmoid/softmax itself but got {what}: it is applied twice; "
                   "return raw logits from the model", key=f"TM202:{name}", op=name,
                   input_min=float(inp.min()), input_max=float(inp.max()), origin=self.origin.get(id(inp)))

    def _class_loss(self, name: str, inp: torch.Tensor, tgt: torch.Tensor, kwargs: dict) -> None:
        if inp.dim() == 0 or not inp.is_floating_point():
            return
        ignore = kwargs.get("ignore_index", -100)
        classes = int(inp.shape[1] if inp.dim() >= 2 else inp.shape[0])
        loss = "CrossEntropyLoss" if name == "cross_entropy" else "NLLLoss"
        if tgt.is_floating_point():
            if name == "cross_entropy" and tgt.shape == inp.shape:
                lo, hi = float(tgt.min()), float(tgt.max())
                sums = tgt.sum(dim=1)
                if lo < -1e-6 or hi > 1 + 1e-6 or float((sums - 1).abs().max()) > 1e-3:
                    self.issue("TM203", f"{loss} reads float targets of the logits' shape {tuple(inp.shape)} as class "
                               f"probabilities, but they lie in [{fmt_num(lo)}, {fmt_num(hi)}] with row sums in "
                               f"[{fmt_num(float(sums.min()))}, {fmt_num(float(sums.max()))}]; multi-label targets "
                               "need BCEWithLogitsLoss", key="TM203:soft", op=name)
            else:
                self.issue("TM203", f"{loss} got float class indices ({tgt.dtype}, shape {tuple(tgt.shape)}); class "
                           "indices must be integers: use y.long()", key="TM203:float-index", op=name,
                           target_dtype=str(tgt.dtype))
                raise Abort
        else:
            if inp.dim() >= 2 and tgt.shape == inp.shape:
                self.issue("TM203", f"{loss} got one-hot integer targets of shape {tuple(tgt.shape)}; pass class "
                           "indices (y.argmax(1)) or float probabilities (y.float())", key="TM203:one-hot", op=name)
                raise Abort
            if inp.dim() >= 2 and tgt.dim() == inp.dim():
                self.issue("TM203", f"{loss} needs class indices of shape {(int(inp.shape[0]),)}, got "
                           f"{tuple(tgt.shape)}: use y.squeeze(1)", key="TM203:shape", op=name,
                           target_shape=tuple(tgt.shape))
                raise Abort
            valid = tgt[tgt != ignore]
            if valid.numel():
                lo, hi = int(valid.min()), int(valid.max())
                if lo < 0 or hi >= classes:
                    self.issue("TM203", f"{loss} got class indices in [{lo}, {hi}] but the model has {classes} "
                               f"classes (valid: 0..{classes - 1})" + (" — classes numbered from 1?" if lo >= 1 and
                                                                        hi == classes else ""),
                               key="TM203:range", op=name, target_min=lo, target_max=hi, classes=classes)
                    raise Abort
        if name == "cross_entropy" and classes == 1 and inp.dim() >= 2:
            self.issue("TM203", "CrossEntropyLoss over a single class is always 0: a one-logit binary classifier "
                       "needs BCEWithLogitsLoss", key="TM203:one-class", op=name, classes=1)
        origin = self.origin.get(id(inp))
        probs = inp.dim() >= 2 and float(inp.min()) >= 0 and float(inp.max()) <= 1 \
            and float((inp.sum(dim=1) - 1).abs().max()) < 1e-3
        if name == "cross_entropy":
            if origin in ("softmax", "sigmoid") or probs:
                what = f"the output of a {origin}" if origin in ("softmax", "sigmoid") else \
                    "rows of probabilities (in [0, 1], summing to 1)"
                self._probs_into_logits(name, inp, what)
        elif origin != "log_softmax" and inp.dim() >= 2:
            if origin == "softmax" or probs:
                self.issue("TM202", "NLLLoss expects log-probabilities but got probabilities: use log_softmax "
                           "(or CrossEntropyLoss on the logits)", key="TM202:nll", op=name, origin=origin)
            elif float(inp.max()) > 1e-4 or float(torch.logsumexp(inp.float(), dim=1).abs().mean()) > 1e-2:
                self.issue("TM202", "NLLLoss expects log-probabilities (log_softmax) but got raw logits: use "
                           "CrossEntropyLoss, or end the model with log_softmax(dim=1)", key="TM202:nll",
                           op=name, origin=origin, input_max=float(inp.max()))

    # -- after the op: provenance, tags, activations -------------------------------------------------
    def after(self, name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outs = [out]
        elif isinstance(out, (tuple, list)):
            outs = [o for o in out if isinstance(o, torch.Tensor)]
        else:
            return
        if not outs:
            return
        tens = tensor_args(args, kwargs)
        first = tens[0] if tens else None
        if name in SHAPE_OPS and first is not None:
            origin = self.origin.get(id(first), name)
            rng = self.range_of.get(id(first))
        else:
            origin = name
            rng = self._range(name, args, kwargs)
        for o in outs:
            self.origin[id(o)] = origin
            if rng is not None:
                self.range_of[id(o)] = rng
                self.keep.append(o)
            else:
                self.range_of.pop(id(o), None)
        if self.labels:
            lab: frozenset[str] = frozenset().union(*(self.label(t) for t in tens)) if tens else frozenset()
            for o in outs:
                if lab:
                    self.tag(o, lab)
                else:
                    self.labels.pop(id(o), None)
            if self.traps:
                for t in tens:
                    ev = self.traps.get(id(t))
                    if ev is not None and "then" not in ev:
                        ev["then"] = name
            if name in ELEMENTWISE and len(args) >= 2:
                self._elementwise(name, args[0], args[1], out)
        if first is not None and self.label(first) != _TO:
            if name in ("sigmoid", "tanh"):
                self._saturation(name, first)
            elif name == "relu" and isinstance(out, torch.Tensor):
                self._dead(out)

    def _range(self, name: str, args: tuple, kwargs: dict) -> tuple[float, float, str] | None:
        if name in HEAD_RANGES:
            lo, hi = HEAD_RANGES[name]
            return lo, hi, name
        if name == "hardtanh":
            lo, hi = _arg(args, kwargs, 1, "min_val"), _arg(args, kwargs, 2, "max_val")
            return (float(lo) if _num(lo) else -1.0), (float(hi) if _num(hi) else 1.0), name
        if name in ("clamp", "clip", "clamp_min", "clamp_max"):
            lo = _arg(args, kwargs, 1, "min") if name != "clamp_max" else None
            hi = _arg(args, kwargs, 2, "max") if name in ("clamp", "clip") else (
                _arg(args, kwargs, 1, "max") if name == "clamp_max" else None)
            if (lo is None or _num(lo)) and (hi is None or _num(hi)) and (lo is not None or hi is not None):
                return (-INF if lo is None else float(lo)), (INF if hi is None else float(hi)), name
        return None

    def _elementwise(self, name: str, a: Any, b: Any, out: Any) -> None:
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return
        la, lb = self.label(a), self.label(b)
        if la == _PO and lb == _TO:
            pred, targ = a, b
        elif la == _TO and lb == _PO:
            pred, targ = b, a
        else:
            return
        if name in DIFF_OPS:
            self.meets.append((name, pred, targ))
        if isinstance(out, torch.Tensor) and a.dim() != b.dim() and out.numel() > max(a.numel(), b.numel()):
            where = user_location()
            ev = {"op": name, "prediction_shape": tuple(pred.shape), "target_shape": tuple(targ.shape),
                  "result_shape": tuple(out.shape), "where": where, "module": self.where()}
            iss = self.issue("TM201", "", key=f"TM201:{name}:{where}", **ev)
            if not iss.message:
                self.traps[id(out)] = iss.evidence

    def _saturation(self, name: str, x: torch.Tensor) -> None:
        if x.numel() < 16 or not x.is_floating_point():
            return
        key = self._site(name)
        share = float((x.detach().abs() > self.cfg.saturation_abs).float().mean())
        old = self.sat.get(key)
        if old is None or share > old["share"]:
            self.sat[key] = {"site": key, "op": name, "share": share, "values": x.numel()}

    def _dead(self, out: torch.Tensor) -> None:
        x = out.detach()
        if x.dim() < 2 or not x.is_floating_point():
            return
        shares = []
        dims = [1, 2] if x.dim() == 3 else [x.dim() - 1] if x.dim() == 2 else [1]
        for d in dims:
            units = x.shape[d]
            samples = x.numel() // max(units, 1)
            if units < 4 or samples < self.cfg.dead_relu_min_samples:
                continue
            per_unit = x.transpose(0, d).reshape(units, -1).amax(dim=1)
            shares.append((float((per_unit <= 0).float().mean()), units))
        if not shares:
            return
        share, units = min(shares)
        key = self._site("relu")
        old = self.dead.get(key)
        if old is None or share > old["share"]:
            self.dead[key] = {"site": key, "share": share, "units": units}

    def _site(self, name: str) -> str:
        where = self.where()
        k = f"{where}:{name}"
        n = self._calls.get(k, 0) + 1
        self._calls[k] = n
        if where.endswith(")") and where.split("(")[-1].rstrip(")").lower().startswith(name.replace("_", "")):
            return where  # the op is the module itself (nn.ReLU, nn.Sigmoid)
        return f"{where}: {name} #{n}" if n > 1 else f"{where}: {name}"

    # -- after the replay -----------------------------------------------------------------------------
    def finalize(self) -> list[Issue]:
        cfg = self.cfg
        for iss in self.issues:
            if iss.code == "TM201" and not iss.message:
                ev = iss.evidence
                then = f", then {ev['then']}()" if ev.get("then") else ""
                at = f" at {ev['where']}" if ev.get("where") else ""
                iss.message = (f"{ev['op']}({ev['prediction_shape']}, {ev['target_shape']}) -> {ev['result_shape']}"
                               f"{then}{at}: the prediction and the target broadcast to a larger shape than "
                               f"either, comparing every prediction with every target")
        out = list(self.issues)
        sat = [s for s in self.sat.values() if s["share"] > cfg.saturation_share]
        if sat:
            worst = max(sat, key=lambda s: s["share"])
            out.append(Issue("TM206", f"{worst['share']:.0%} of the inputs of {worst['site']} lie beyond "
                             f"±{cfg.saturation_abs:g}" + (f" (and {len(sat) - 1} more site(s))" if len(sat) > 1 else ""),
                             {"sites": sat}, "TM206"))
        dead = [d for d in self.dead.values() if d["share"] >= cfg.dead_relu_share]
        if dead:
            worst = max(dead, key=lambda d: d["share"])
            out.append(Issue("TM207", f"{worst['share']:.0%} of the {worst['units']} units of {worst['site']} are "
                             "never positive on this batch" + (f" (and {len(dead) - 1} more layer(s))"
                                                                if len(dead) > 1 else ""),
                             {"layers": dead}, "TM207"))
        iss = depth_issue([(n, s) for n, _m, s in self.layers], "activation std", cfg, self.segments, self.chain.heads)
        if iss:
            out.append(iss)
        for _op, pred, targ in self.meets:
            rng = self.range_of.get(id(pred))
            if rng is None:
                continue
            lo, hi, op = rng
            t = targ.detach().float()
            tol = 1e-6
            outside = ((t < lo - tol * (1 + abs(lo))) | (t > hi + tol * (1 + abs(hi)))).float().mean()
            share = float(outside)
            if share >= cfg.head_outside_share:
                out.append(Issue("TM211", f"the prediction comes out of `{op}` (range [{fmt_num(lo)}, {fmt_num(hi)}]) "
                                 f"but {share:.0%} of the targets lie outside it (targets in "
                                 f"[{fmt_num(float(t.min()))}, {fmt_num(float(t.max()))}])",
                                 {"activation": op, "range": [lo, hi], "share_outside": share,
                                  "target_min": float(t.min()), "target_max": float(t.max())}, "TM211"))
            break
        return out


def kl_div_input(w: PreflightWatcher, name: str, inp: torch.Tensor) -> None:
    """``F.kl_div(input, target)`` / ``nn.KLDivLoss`` take the *log*-probabilities of the prediction as
    ``input`` (the target's form is what ``log_target`` says). Given probabilities (a softmax's output)
    the loss is not a divergence at all: its minimum is not where the prediction matches the target,
    and a distillation student learns the wrong thing without any error. A log-probability is never
    positive, so an input with positive values (up to rounding) is not one, whatever produced it."""
    origin = w.origin.get(id(inp))
    if name != "kl_div" or origin == "log_softmax" or not inp.is_floating_point() or inp.numel() == 0:
        return
    top = float(inp.max())
    if origin in ("softmax", "sigmoid") or top > 1e-4:
        what = f"the output of a {origin}" if origin in ("softmax", "sigmoid") else \
            f"values up to {fmt_num(top)} (a log-probability is never positive)"
        w.issue("TM202", f"`F.{name}` (KLDivLoss) expects log-probabilities as its input but got {what}: "
                "pass `F.log_softmax(logits, dim=1)` (the target stays probabilities unless "
                "log_target=True)", key="TM202:kl_div", op=name, origin=origin, input_max=top)


def judge_loss_call(w: PreflightWatcher, name: str, inp: torch.Tensor, tgt: torch.Tensor, kwargs: dict[str, Any],
                    origin: str | None = None, where: str | None = None) -> None:
    """The loss-input checks for a loss seen outside a replay (live checks): ``origin`` is the op that
    produced the input (from the autograd graph), ``where`` the user's line when the call was seen."""
    inp, tgt = inp.detach(), tgt.detach()
    w.origin[id(inp)] = origin
    w.keep.append(inp)
    rng = HEAD_RANGES.get(origin or "")
    if rng is not None:
        w.range_of[id(inp)] = (*rng, origin)
    w.where_hint = where
    try:
        w.before(name, None, (inp, tgt), kwargs)
    except Abort:
        pass
    finally:
        w.where_hint = None


def depth_issue(values: list[tuple[str, float]], what: str, cfg: PreflightThresholds,
                segments: list[int] | None = None, heads: list[bool] | None = None) -> Issue | None:
    """TM205 on a chain of layers (the heads are left out: their scale is the loss's business).

    ``heads`` (aligned with ``values``, :meth:`LayerChain.mark_heads`): the layers that feed the output
    directly; without it the last layer is the head.

    ``segments`` (aligned with ``values``): how many normalization layers (BatchNorm, LayerNorm, GroupNorm,
    InstanceNorm) ran before each layer. A normalization resets the scale, so only layers between the same
    two normalizations form a chain: DCGAN's documented N(0, 0.02) init has convolutions whose output std
    differs 30x from one BatchNorm to the next, and the network trains as intended."""
    segs_all = segments or [0] * len(values)
    keep = [not h for h in heads] if heads is not None and len(heads) == len(values) else \
        [i < len(values) - 1 for i in range(len(values))]
    hidden = [v for v, k in zip(values, keep) if k]
    segs = [g for g, k in zip(segs_all, keep) if k]
    worst = None
    for seg in dict.fromkeys(segs):
        iss = _chain_issue([v for v, g in zip(hidden, segs) if g == seg], what, cfg)
        if iss is not None and (worst is None or iss.evidence["ratio"] > worst.evidence["ratio"]):
            worst = iss
    return worst


def _chain_issue(hidden: list[tuple[str, float]], what: str, cfg: PreflightThresholds) -> Issue | None:
    # A layer whose output (or weight gradient) is exactly zero is zero by construction, not badly scaled: a
    # LoRA B or a zero-initialized residual branch, and what feeds it gets no gradient. Whether such a zero
    # is a fault is the symmetry check's question (identical units with identical gradients, TM205).
    hidden = [(n, v) for n, v in hidden if v != 0]
    if len(hidden) < 2:
        return None
    vals = [v for _, v in hidden]
    hi, lo = max(vals), min(vals)
    if not (hi > 0) or not math.isfinite(hi):
        return None
    ratio = hi / lo if lo > 0 else INF
    per_layer = ratio ** (1 / (len(hidden) - 1)) if math.isfinite(ratio) else INF
    if ratio > cfg.poor_init_ratio and per_layer > cfg.poor_init_per_layer:
        i_hi, i_lo = vals.index(hi), vals.index(lo)
        trend = "shrinks" if i_lo > i_hi else "grows"
        return Issue("TM205", f"the {what} {trend} {fmt_num(ratio)}x across {len(hidden)} layers "
                     f"({fmt_num(per_layer)}x per layer) at initialization: {hidden[0][0]} "
                     f"{fmt_num(vals[0])} ... {hidden[-1][0]} {fmt_num(vals[-1])}",
                     {"measure": what, "ratio": ratio, "per_layer": per_layer,
                      "layers": [{"layer": n, "value": v} for n, v in hidden]}, f"TM205:{what}")
    return None


# ---------------------------------------------------------------------------------------------------
# the pieces
# ---------------------------------------------------------------------------------------------------
def _loss_label(loss_fn: Any) -> str:
    if isinstance(loss_fn, nn.Module):
        return f"loss ({type(loss_fn).__name__})"
    return "loss"


def replay(model: nn.Module, loss_fn: Any, batch: Batch, cfg: PreflightThresholds) -> tuple[PreflightWatcher, Any]:
    """Run ``loss_fn(model(inputs), target)`` once under the watcher; returns (watcher, loss or None)."""
    w = PreflightWatcher(cfg)
    w.attach(model)
    loss = None
    try:
        with silenced():
            with w:
                out = call_model(model, batch.inputs)
                w.chain.mark_heads(out)
                w.phase = "loss"
                for t in _tensors(out):
                    w.tag(t, _PO)
                for t in _tensors(batch.target):
                    w.tag(t, _TO)
                if loss_fn is not None:
                    with w.scope(_loss_label(loss_fn)):
                        loss = loss_fn(out, batch.target)
    except Abort:
        loss = None
    finally:
        w.detach()
    return w, loss


def grad_issues(model: nn.Module, layers: list[tuple[str, nn.Module, float]], cfg: PreflightThresholds,
                segments: list[int] | None = None, heads: list[bool] | None = None) -> list[Issue]:
    """TM204 (no gradient after backward) and TM205 (weight-gradient RMS across depth), from ``.grad``."""
    out: list[Issue] = []
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        out.append(Issue("TM204", f"{len(missing)} trainable parameter(s) got no gradient from backward: "
                         f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "") +
                         " (not used in forward, or cut off by detach()/no_grad())",
                         {"no_grad": missing[:50], "count": len(missing)}, "TM204:no-grad"))
    rms, segs, hd = [], [], []
    for i, (name, mod, _std) in enumerate(layers):
        g = _weight_grad(mod)
        if g is None:
            continue
        rms.append((name, float(g.detach().float().norm()) / math.sqrt(max(g.numel(), 1))))
        segs.append(segments[i] if segments is not None and i < len(segments) else 0)
        hd.append(bool(heads[i]) if heads is not None and i < len(heads) else False)
    iss = depth_issue(rms, "weight-gradient RMS", cfg, segs, hd if heads is not None else None)
    if iss:
        out.append(iss)
    return out


def _weight_grad(mod: nn.Module) -> torch.Tensor | None:
    """The gradient of a layer's trainable weight. Under a parametrization (``weight_norm``,
    ``spectral_norm`` from ``nn.utils.parametrizations``) ``mod.weight`` is computed, not a leaf: reading its
    ``.grad`` printed torch's UserWarning into the user's stderr (benchmarks/fresh3 gaussnll_hetero) and gave
    nothing. The parametrization's own tensor of the weight's shape is read instead (weight_norm's
    direction ``original1``, a single ``original``)."""
    if parametrize.is_parametrized(mod, "weight"):
        p = mod.parametrizations["weight"]
        w = getattr(p, "original", None)
        if w is None:
            w = getattr(p, "original1", None)
    else:
        w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or not w.is_leaf:
        return None
    return w.grad


def weight_scale_issue(model: nn.Module, optimizer: Any, cfg: PreflightThresholds,
                       trained: frozenset[int] = frozenset()) -> Issue | None:
    """TM205 from the weights themselves: drawn with a fixed std far above ``1/sqrt(fan_in)``.

    A layer multiplies the variance of its input by about ``fan_in * Var(w)`` (the square of its *gain*,
    ``std(w) * sqrt(fan_in)``). Sound inits keep the gain near 1 (PyTorch's default 0.58, Kaiming 1.41,
    Xavier <= 1.41, DCGAN's N(0, 0.02) at most ~1.8); weights drawn from N(0, 1) have a gain of
    ``sqrt(fan_in)``, so the signal grows that much per layer. Read once, at the first step, from the
    trained Linear, convolution and recurrent weights with a fan-in of at least ``poor_init_min_fan_in``
    (embeddings are N(0, 1) by design and are left out): every front end has the model, nothing else is
    needed, and a network whose layers are uniformly too large shows no change *across* depth. ``trained``:
    ids of weights trained in an earlier phase (not an initialization), left out."""
    held = {id(p) for g in getattr(optimizer, "param_groups", ()) for p in g["params"]} - trained
    rows = []
    for name, mod in model.named_modules():
        if isinstance(mod, (*LAYER_TYPES, nn.RNNBase)):
            for pname, p in mod.named_parameters(recurse=False):
                if not pname.startswith("weight") or p.dim() < 2 or not p.requires_grad or id(p) not in held:
                    continue
                fan_in = p[0].numel()
                if fan_in >= cfg.poor_init_min_fan_in:
                    std = float(p.detach().float().std())
                    rows.append({"layer": f"{name}.{pname}" if name else pname, "std": std, "fan_in": fan_in,
                                 "gain": std * math.sqrt(fan_in)})
    large = [r for r in rows if r["gain"] > cfg.poor_init_gain]
    if not rows or 2 * len(large) <= len(rows):
        return None
    worst = max(large, key=lambda r: r["gain"])
    return Issue("TM205", f"{len(large)} of {len(rows)} weight layers start with std x sqrt(fan_in) above "
                 f"{fmt_num(cfg.poor_init_gain)} (e.g. {worst['layer']}: std {fmt_num(worst['std'])} at a fan-in of "
                 f"{worst['fan_in']}, a gain of {fmt_num(worst['gain'])}): each multiplies the signal's scale by that "
                 "much; an init with a fixed std (normal_(0, 1)?) instead of ~1/sqrt(fan_in)",
                 {"measure": "weight std x sqrt(fan_in)", "layers": large[:20], "judged": len(rows),
                  "gain": worst["gain"]}, "TM205:weight-scale")


def optimizer_issues(model: nn.Module, optimizer: Any, loss_fn: Any = None) -> list[Issue]:
    """TM204: trainable parameters missing from the optimizer, or an optimizer built on another model."""
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return []
    held = {id(p) for g in groups for p in g["params"]}
    known = {id(p) for p in model.parameters()}
    if isinstance(loss_fn, nn.Module):
        known |= {id(p) for p in loss_fn.parameters()}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held]
    foreign = len(held - known)
    if missing and foreign:
        return [Issue("TM204", f"the optimizer holds {foreign} tensor(s) that are not this model's parameters and "
                      f"misses {len(missing)} of the model's: it was built on another model instance (re-created, "
                      "copied or re-loaded after the optimizer?)",
                      {"foreign": foreign, "not_in_optimizer": missing[:50], "count": len(missing)}, "TM204:foreign")]
    if missing:
        return [Issue("TM204", f"{len(missing)} trainable parameter(s) are not in the optimizer and will never be "
                      f"updated: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "") +
                      " (freeze them with requires_grad_(False) if that is intended)",
                      {"not_in_optimizer": missing[:50], "count": len(missing)}, "TM204:not-in-optimizer")]
    return []


def _set_dropout_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


def overfit_one_batch(model: nn.Module, loss_fn: Any, batch: Batch, cfg: PreflightThresholds) -> Issue | None:
    """TM208: can Adam drive the loss of one small repeated batch down by ``overfit_drop``? (on copies)"""
    n = batch.size or 1
    rows = min(n, max(cfg.overfit_rows, 2))
    sub = batch.select(torch.arange(rows)) if n > rows else batch
    tried = []
    for lr in cfg.overfit_lrs:
        m, _, lf = copy_for_replay(model, None, loss_fn if isinstance(loss_fn, nn.Module) else None)
        lf = lf if lf is not None else loss_fn
        m.train()
        _set_dropout_eval(m)
        params = [p for p in m.parameters() if p.requires_grad]
        if not params:
            return None
        opt = torch.optim.Adam(params, lr=lr)
        first, best, steps = math.nan, math.inf, 0
        for steps in range(1, cfg.overfit_steps + 1):
            opt.zero_grad(set_to_none=True)
            loss = lf(call_model(m, sub.inputs), sub.target)
            if loss.numel() != 1:
                loss = loss.mean()
            v = float(loss.detach())
            if steps == 1:
                first = v
                if not (math.isfinite(v) and v > 0):
                    return None  # a loss that can be negative or is not finite: the 90 % rule does not apply
            best = min(best, v) if math.isfinite(v) else best
            if best <= (1 - cfg.overfit_drop) * first:
                return None
            loss.backward()
            opt.step()
        tried.append({"lr": lr, "initial_loss": first, "best_loss": best, "steps": steps,
                      "drop": 1 - best / first if first else 0.0})
    best_try = max(tried, key=lambda d: d["drop"])
    lrs = ", ".join(f"{t['lr']:g}" for t in tried)
    return Issue("TM208", f"Adam could not fit one repeated batch of {rows} rows: the loss fell only "
                 f"{best_try['drop']:.0%} (from {fmt_num(best_try['initial_loss'])} to {fmt_num(best_try['best_loss'])}) "
                 f"in {cfg.overfit_steps} steps at lr {lrs}; expected "
                 f"{cfg.overfit_drop:.0%}: check the model/loss wiring", {"rows": rows, "tries": tried}, "TM208")


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


# ---------------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------------
def preflight(model: nn.Module, loss_fn: Any, batch: Any, optimizer: Any = None, *,
              overfit: bool | str = "auto", thresholds: PreflightThresholds | dict[str, Any] | None = None
              ) -> list[Finding]:
    """Check the wiring of a training setup on one batch; returns the findings (empty when all is well).

    Args:
        model: the model to train. It is deep-copied; the original, its ``.grad`` and buffers are untouched.
        loss_fn: ``loss_fn(model(inputs), target) -> loss`` (an ``nn`` loss or any function).
        batch: ``(inputs, target)`` or ``(inputs, target, indices)``; ``inputs`` may be a tensor, a tuple
            (``model(*inputs)``) or a dict (``model(**inputs)``).
        optimizer: optional; checked for parameters it misses or holds from another model (TM204).
        overfit: TM208, fitting one small repeated batch with Adam: ``True``, ``False``, or ``"auto"`` (run
            only when its estimated cost is below ``thresholds.overfit_budget_s``).
        thresholds: a :class:`PreflightThresholds` or a dict of overrides.

    The global RNG is forked (restored afterwards), so calling preflight does not change what the run
    draws next.
    """
    cfg = thresholds if isinstance(thresholds, PreflightThresholds) else replace(PreflightThresholds(), **(thresholds or {}))
    b = split_batch(batch)
    if b is None:
        raise ValueError("preflight needs batch=(inputs, target) or (inputs, target, indices)")
    issues: list[Issue] = []
    if optimizer is not None:
        issues += optimizer_issues(model, optimizer, loss_fn)
        scale = weight_scale_issue(model, optimizer, cfg)
        issues += [scale] if scale is not None else []
    m, _opt, lf = copy_for_replay(model, None, loss_fn if isinstance(loss_fn, nn.Module) else None)
    lf = lf if lf is not None else loss_fn
    with torch.random.fork_rng(devices=_cuda_devices(model)):
        with torch.enable_grad():
            w, loss = replay(m, lf, b, cfg)
            issues += w.finalize()
            backward_ok = False
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                try:
                    (loss if loss.numel() == 1 else loss.mean()).backward()
                    backward_ok = True
                except RuntimeError:
                    backward_ok = False
            if backward_ok:
                issues += grad_issues(m, w.layers, cfg, w.segments, w.chain.heads)
                trained = None
                if optimizer is not None:  # the copy's parameters that the optimizer holds in the original
                    held = {id(p) for g in getattr(optimizer, "param_groups", ()) for p in g["params"]}
                    names = {n for n, p in model.named_parameters() if id(p) in held}
                    trained = [p for n, p in m.named_parameters() if n in names]
                issues += _symmetric(m, trained)
            elif isinstance(loss, torch.Tensor) and not loss.requires_grad:
                issues.append(Issue("TM204", "the loss does not require grad: no parameter receives a gradient "
                                    "(the output was detached, or computed under no_grad/.item())",
                                    {"loss_requires_grad": False}, "TM204:no-grad"))
            if isinstance(loss, torch.Tensor) and backward_ok and overfit and \
                    not any(i.code in ("TM201", "TM202", "TM203") for i in issues):
                run = overfit is True
                if overfit == "auto":
                    run = _overfit_cost(m, lf, b, cfg) <= cfg.overfit_budget_s
                if run:
                    iss = overfit_one_batch(model, loss_fn, b, cfg)
                    if iss:
                        issues.append(iss)
    return [i.finding() for i in _dedupe(issues)]


def _symmetric(model: nn.Module, trained: list[Any] | None) -> list[Issue]:
    """TM205 from units that start identical and get identical gradients (:mod:`trainmedic.observe.symmetry`)."""
    from trainmedic.observe.symmetry import symmetric_units_issue  # it builds on this module's Issue

    iss = symmetric_units_issue(model, trained)
    return [iss] if iss is not None else []


def _overfit_cost(model: nn.Module, loss_fn: Any, batch: Batch, cfg: PreflightThresholds) -> float:
    n = batch.size or 1
    rows = min(n, max(cfg.overfit_rows, 2))
    sub = batch.select(torch.arange(rows)) if n > rows else batch
    t0 = time.perf_counter()
    loss = loss_fn(call_model(model, sub.inputs), sub.target)
    (loss if loss.numel() == 1 else loss.mean()).backward()
    for p in model.parameters():
        p.grad = None
    return (time.perf_counter() - t0) * cfg.overfit_steps * len(cfg.overfit_lrs) * 1.3


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[str] = set()
    out = []
    for i in issues:
        k = i.key or i.code
        if k not in seen:
            seen.add(k)
            out.append(i)
    return out


INIT_CODES = ("TM205", "TM206", "TM207")  # judged on a model at its initialization only


def follows_phases(driver: Any, earlier: Iterable[Any]) -> None:
    """``driver``'s model is trained after the ``earlier`` drivers' (a training phase: run's
    instrument/phases.py, or a Medic built after another had stepped): the weights they trained are no
    initialization, so its pre-flight's init checks leave them out (:meth:`PreflightCallback.pretrained`)."""
    trained = [p for d in earlier for g in d.optimizer.param_groups for p in g["params"]]
    for cb in driver.callbacks:
        if isinstance(cb, PreflightCallback):
            cb.pretrained(trained)


class PreflightCallback(MedicCallback):
    """Runs the cheap wiring checks once, at the first ``medic.step``; reports through the Medic.

    At the first step it checks optimizer membership and which parameters got no gradient (TM204) and
    the weight-gradient RMS across depth (TM205) from the gradients the user's backward produced, and
    layers whose units start identical and get identical gradients (TM205, :mod:`trainmedic.observe.symmetry`:
    an all-zero init, named before any windowed rule sees that the loss does not fall). At the
    first step that passes ``batch=(inputs, target)`` (within ``max_wait`` steps) it replays the forward
    and the loss on the real model without gradients, its buffers and the RNG restored afterwards
    (TM201-TM203, TM205-TM207, TM211). TM208 is never run here (it trains; call ``preflight`` for it).
    """

    name = "preflight"

    def __init__(self, loss_fn: Any = None, thresholds: PreflightThresholds | None = None, max_wait: int = 10) -> None:
        self.loss_fn = loss_fn
        self.cfg = thresholds or PreflightThresholds()
        self.max_wait = max_wait
        self.params_done = False
        self.replay_done = False
        self.seconds = 0.0
        self.trained: frozenset[int] = frozenset()  # see :meth:`pretrained`

    def pretrained(self, params: Any) -> None:
        """These parameters were trained in an earlier phase (a fine-tuning's body: a new optimizer over a
        pre-trained model, instrument/phases.py): the model does not start at an initialization, so the
        initialization checks (TM205: weight scale, output std and gradient RMS across depth; TM206/TM207 on
        the replayed batch) leave them out (the weight scale) or do not run (the others)."""
        self.trained = frozenset(id(p) for p in params)

    def on_before_step(self, medic: Any, step: int, loss: Any, batch: Any) -> None:
        if self.replay_done:
            return
        if not self.params_done and step > 0:
            self.replay_done = True  # a resumed run: its pre-flight ran (and was recorded) before the restart
            return
        t0 = time.perf_counter()
        issues: list[Issue] = []
        model = medic.model
        loss_fn = self.loss_fn if self.loss_fn is not None else getattr(medic, "loss_fn", None)
        if not self.params_done:
            self.params_done = True
            issues += optimizer_issues(model, medic.optimizer, loss_fn)
            issues += [i for i in grad_issues(model, [], self.cfg) if i.code == "TM204"]
            scale = weight_scale_issue(model, medic.optimizer, self.cfg, self.trained)
            issues += [scale] if scale is not None else []
            issues += _symmetric(model, [p for g in medic.optimizer.param_groups for p in g["params"]])
        b = split_batch(batch) if batch is not None else _kept_input(medic)
        if b is not None:
            self.replay_done = True
            try:
                # with a graph (no backward runs, so no .grad changes): TM205 finds the heads from it
                with isolated(model), torch.enable_grad():
                    w, _ = replay(model, loss_fn, b, self.cfg)
            except Exception:
                # The batch does not replay through this module (a LightningModule without forward, a
                # module stitched from parts): its wiring is read from the live step instead
                # (trainmedic.observe.live), so there is nothing to report here.
                w = None
            if w is not None:
                at_init = not any(id(p) in self.trained for p in model.parameters())
                # a pre-trained body is past its initialization: units silent on one batch or saturated
                # inputs there are what it learnt (TM311 judges dead units over a window of training)
                issues += [i for i in w.finalize() if at_init or i.code not in INIT_CODES]
                issues += [i for i in grad_issues(model, w.layers, self.cfg, w.segments, w.chain.heads) if i.code == "TM205" and at_init]
        elif step + 1 >= self.max_wait:
            self.replay_done = True
        for iss in _dedupe(issues):
            medic.report(iss.code, iss.message, step=step, evidence=iss.evidence, key=iss.key)
        self.seconds += time.perf_counter() - t0  # its one-time cost (benchmarks/preflight_cost.py)


def _kept_input(medic: Any) -> Batch | None:
    """No batch handed over (``medic.step(loss)``): the input of the step's own training forward, which a Medic
    keeps (``LiveChecks.keep_inputs``), replayed forward-only. The initialization checks on the activations
    (TM205 output std, TM206, TM207) need no target and no loss; the wiring checks of the loss (TM201-TM203,
    TM211) stay with the live step's loss calls."""
    live = getattr(medic, "live", None)
    args = getattr(live, "last_inputs", None)
    if not isinstance(args, tuple) or not args or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    return Batch(args, None)


__all__ = ["PreflightCallback", "PreflightThresholds", "preflight"]

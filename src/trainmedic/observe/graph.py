"""Reading the loss's autograd graph: which loss, fed by what, and whether prediction and target broadcast.

Every front end has the loss tensor; not every one has the loss function or the batch. The graph behind
the loss records what was done to the prediction on the way to the loss, so the wiring checks can run
from it alone:

* the loss nodes PyTorch's losses leave (``MseLossBackward0``, ``NllLossBackward0`` behind
  ``cross_entropy``, ``BinaryCrossEntropyBackward0``...), with the op that produced their input
  (``softmax``, ``sigmoid``, ``log_softmax``, ``relu``... looking through reshapes) — TM202, TM211;
  ``kl_div``, which leaves no node of its own, by the shape of its formula;
* broadcasts of the prediction to a larger shape, then reduced: an elementwise op (a hand-written
  ``((pred - y) ** 2).mean()``) or the ``expand`` a loss function does itself, whose output is ``B`` times
  larger than the prediction with the batch size repeated — the ``(B,1) - (B,)`` trap (TM201).

Read before ``backward()`` (``trainmedic run``'s backward hook, Lightning's ``on_before_backward``, the
Hugging Face model's output) the loss nodes still hold their input and target (``_saved_self``,
``_saved_target``: PyTorch documents these saved-tensor attributes in its autograd notes), so the value
checks can run too. Read after ``backward()`` (``medic.step(loss)``) the saved tensors are freed and only
shapes and op names are left: enough for TM201 and the provenance of the input.

The walk stops at the model: a node that takes a parameter directly (its children include an
``AccumulateGrad``) is model territory. It visits at most ``MAX_NODES`` nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

MAX_NODES = 400

#: loss node -> the torch.nn.functional loss it comes from
LOSS_NODES = {
    "MseLossBackward0": "mse_loss", "NllLossBackward0": "nll_loss", "NllLoss2DBackward0": "nll_loss",
    "BinaryCrossEntropyBackward0": "binary_cross_entropy",
    "BinaryCrossEntropyWithLogitsBackward0": "binary_cross_entropy_with_logits",
    "SmoothL1LossBackward0": "smooth_l1_loss", "HuberLossBackward0": "huber_loss", "KlDivBackward0": "kl_div",
    "SoftMarginLossBackward0": "soft_margin_loss", "MultilabelMarginLossBackward0": "multilabel_margin_loss",
}
#: reshapes that keep the values: provenance looks through them
VIEWS = frozenset({"view", "unsafe_view", "reshape_alias", "squeeze", "unsqueeze", "slice", "select", "t",
                   "transpose", "permute", "clone", "to_copy", "alias", "expand", "contiguous", "as_strided",
                   "index", "flatten", "split", "unbind", "narrow"})
#: reshapes that add an axis on purpose: a broadcast right after one is intended (``pred[:, None] - y``)
EXPLICIT_AXES = frozenset({"unsqueeze", "view", "reshape_alias", "unsafe_view", "select", "as_strided", "expand"})
ELEMENTWISE = frozenset({"sub", "rsub", "add", "mul", "div", "pow", "maximum", "minimum", "fmax", "fmin",
                         "atan2", "hypot", "xlogy", "where", "smooth_l1_loss", "huber_loss"})
REDUCTIONS = frozenset({"mean", "sum", "nansum", "nanmean", "norm", "linalg_vector_norm", "logsumexp"})


def op_of(node: Any) -> str:
    """``SigmoidBackward0`` -> ``sigmoid``; ``torch::autograd::AccumulateGrad`` -> ``accumulate_grad``."""
    name = node.name().split("::")[-1]
    for suffix in ("Backward0", "Backward1", "Backward2", "Backward"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("log_softmax", "log_softmax")


def shape_of(node: Any, index: int = 0) -> tuple[int, ...] | None:
    """The shape of a node's forward output ``index`` (what the node's gradient input looks like)."""
    try:
        return tuple(int(s) for s in node._input_metadata[index].shape)
    except (AttributeError, IndexError, RuntimeError, TypeError):
        return None


def _saved(node: Any, name: str) -> Any:
    try:
        return getattr(node, f"_saved_{name}")
    except (AttributeError, RuntimeError):  # freed by backward, or not saved by this node
        return None


def _takes_parameter(node: Any) -> bool:
    return any(child is not None and op_of(child) == "accumulate_grad" for child, _ in node.next_functions)


@dataclass
class LossCall:
    """One loss seen with its input and target (from a call, or from a loss node of the graph)."""

    name: str  # the torch.nn.functional name: mse_loss, cross_entropy, nll_loss, binary_cross_entropy...
    input: torch.Tensor | None = None
    target: torch.Tensor | None = None
    input_shape: tuple[int, ...] | None = None
    target_shape: tuple[int, ...] | None = None
    origin: str | None = None  # the op that produced the input, looking through reshapes
    kwargs: dict[str, Any] = field(default_factory=dict)
    where: str | None = None  # the user's file:line, when the call was seen
    source: str = "graph"  # "call" (seen at the function), "module" (an nn loss module), "graph"


@dataclass
class Broadcast:
    """The prediction broadcast by a target-side operand to ``result_shape``, then reduced."""

    op: str
    prediction_shape: tuple[int, ...]
    result_shape: tuple[int, ...]
    then: str | None = None  # the op applied to the result (pow, abs, mean...)
    loss: str | None = None  # the loss function that broadcast, when it was one (mse_loss...)


@dataclass
class RootLoss:
    """The loss function the whole loss *is* (up to a constant factor): what its constant-prediction level
    is computed for (:mod:`trainmedic.observe.levels`). A sum of several losses has none."""

    name: str  # cross_entropy, nll_loss, binary_cross_entropy(_with_logits), mse_loss, poisson_nll_loss
    factor: float = 1.0  # the loss the front end sees = factor x this loss (``loss / accumulation_steps``)
    target: torch.Tensor | None = None  # None after backward (freed): the front end supplies it
    input_shape: tuple[int, ...] | None = None
    ignore_index: int | None = None
    #: the prediction as the loss saw it (None after backward): log-probabilities (cross_entropy, nll_loss),
    #: logits (BCE with logits), probabilities (BCE), predictions (MSE), rates (Poisson)
    prediction: torch.Tensor | None = None
    #: the loss's input is the model's output up to reshapes (a ``log_softmax`` for cross-entropy): after
    #: backward, when ``prediction`` is freed, the output a front end kept stands for it
    from_output: bool = False


@dataclass
class LossGraph:
    calls: list[LossCall] = field(default_factory=list)
    broadcasts: list[Broadcast] = field(default_factory=list)
    saved: bool = False  # the loss nodes' tensors were still there (read before backward)
    nodes: int = 0
    root: RootLoss | None = None


def provenance(node: Any) -> str | None:
    """The op that produced a node's output, looking through reshapes."""
    seen = 0
    while node is not None and seen < 20:
        op = op_of(node)
        if op not in VIEWS:
            return op
        children = [c for c, _ in node.next_functions if c is not None]
        node = children[0] if children else None
        seen += 1
    return None


def pairwise_signature(pred: tuple[int, ...], result: tuple[int, ...]) -> bool:
    """``(B,1) -> (B,B)`` or ``(B,) -> (B,B)``: the batch size appears once more, and the result is ``B`` times
    larger. Broadcasting a per-row value against a per-feature vector (``(B,1) * (F,)``) does not match."""
    if not pred or not result or len(result) < 2:
        return False
    b = pred[0]
    if b <= 1:
        return False
    return (math.prod(result) == b * math.prod(pred) and result.count(b) == pred.count(b) + 1)


def read_loss_graph(loss: torch.Tensor, model_output: Any = None) -> LossGraph:
    """Walk the graph behind ``loss`` down to the model (see the module docstring)."""
    graph = LossGraph()
    root = loss.grad_fn
    if root is None:
        return graph
    graph.root = root_loss(root, model_output)
    stack: list[tuple[Any, Any]] = [(root, None)]
    seen: set[int] = set()
    while stack and graph.nodes < MAX_NODES:
        node, parent = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        graph.nodes += 1
        name = node.name()
        if name in LOSS_NODES:
            graph.calls.append(_loss_call(node, graph))
        elif op_of(node) == "sub" and parent is not None and op_of(parent) in REDUCTIONS:
            kl = _composite_kl_div(node, graph)
            if kl is not None:
                graph.calls.append(kl)
        elif op_of(node) in ELEMENTWISE or (op_of(node) == "expand" and parent is not None
                                           and parent.name() in LOSS_NODES):
            b = _broadcast(node, parent, model_output)
            if b is not None:
                graph.broadcasts.append(b)
        if _takes_parameter(node) or node is model_output:
            continue  # the model: its own broadcasts are its business
        for child, _ in node.next_functions:
            if child is not None and op_of(child) != "accumulate_grad":
                stack.append((child, node))
    return graph


def _loss_call(node: Any, graph: LossGraph) -> LossCall:
    name = LOSS_NODES[node.name()]
    children = [c for c, _ in node.next_functions]
    first = children[0] if children else None
    origin = provenance(first) if first is not None else None
    if name == "nll_loss" and origin == "log_softmax":
        name = "cross_entropy"  # F.cross_entropy = log_softmax + nll_loss: judge it as the user wrote it
        inner = [c for c, _ in first.next_functions if c is not None]
        origin = provenance(inner[0]) if inner else None
    inp, tgt = _saved(node, "self"), _saved(node, "target")
    if isinstance(inp, torch.Tensor):
        graph.saved = True
    kwargs: dict[str, Any] = {}
    ignore = _saved(node, "ignore_index")
    if isinstance(ignore, int):
        kwargs["ignore_index"] = ignore if ignore < 2**63 else ignore - 2**64  # stored unsigned
    # For cross_entropy the saved input is log_softmax's output: logits up to a per-row constant, which
    # cross_entropy ignores, so it stands for the logits the user passed.
    if first is not None and op_of(first) == "expand":  # the loss broadcast them itself: undo it
        inp, tgt = _unexpand(inp), _unexpand(tgt)
    return LossCall(name=name, input=inp if isinstance(inp, torch.Tensor) else None,
                    target=tgt if isinstance(tgt, torch.Tensor) else None,
                    input_shape=shape_of(first) if first is not None else None,
                    target_shape=tuple(tgt.shape) if isinstance(tgt, torch.Tensor) else None,
                    origin=origin, kwargs=kwargs, source="graph")


def _composite_kl_div(node: Any, graph: LossGraph) -> LossCall | None:
    """``F.kl_div`` leaves no loss node: PyTorch computes it as ``xlogy(target, target) - target * input``,
    then reduces. A ``sub`` whose left side carries no gradient and whose right side is a product of a
    constant (the target) with the prediction, reduced right after, is read as ``kl_div`` with that input."""
    children = list(node.next_functions)
    if len(children) != 2 or children[0][0] is not None or children[1][0] is None or op_of(children[1][0]) != "mul":
        return None
    mul = children[1][0]
    sides = [c for c, _ in mul.next_functions]
    if len(sides) != 2 or (sides[0] is None) == (sides[1] is None):
        return None  # both sides (or neither) carry gradient: not a constant target times the prediction
    pred = sides[1] if sides[0] is None else sides[0]
    if op_of(pred) == "accumulate_grad":
        return None
    shape = shape_of(node)
    if shape is None or shape != shape_of(mul) or shape != shape_of(pred):
        return None  # elementwise all the way, as kl_div is
    target, inp = (_saved(mul, "self"), _saved(mul, "other")) if sides[0] is None else \
        (_saved(mul, "other"), _saved(mul, "self"))
    if isinstance(inp, torch.Tensor):
        graph.saved = True
    return LossCall(name="kl_div", input=inp if isinstance(inp, torch.Tensor) else None,
                    target=target if isinstance(target, torch.Tensor) else None, input_shape=shape,
                    target_shape=tuple(target.shape) if isinstance(target, torch.Tensor) else None,
                    origin=provenance(pred), source="graph")


def _unexpand(t: Any) -> Any:
    """The tensor before ``expand``: along the dimensions of stride 0, one element is enough."""
    if not isinstance(t, torch.Tensor):
        return t
    for d, st in enumerate(t.stride()):
        if st == 0 and t.shape[d] > 1:
            t = t.narrow(d, 0, 1)
    return t


def _broadcast(node: Any, parent: Any, model_output: Any) -> Broadcast | None:
    result = shape_of(node)
    grad_children = [(c, i) for c, i in node.next_functions if c is not None and op_of(c) != "accumulate_grad"]
    params = [c for c, _ in node.next_functions if c is not None and op_of(c) == "accumulate_grad"]
    missing = len(node.next_functions) - len(grad_children) - len(params)
    if result is None or len(grad_children) != 1 or (missing == 0 and op_of(node) != "expand"):
        return None  # both sides carry gradient (pairwise terms of the prediction), or none is a constant
    child, index = grad_children[0]
    pred = shape_of(child, index)
    if pred is None or not pairwise_signature(pred, result):
        return None
    if op_of(child) in EXPLICIT_AXES and child is not model_output and op_of(node) != "expand":
        return None  # the axis was added on purpose just before: an intended all-pairs comparison
    loss = LOSS_NODES.get(parent.name()) if parent is not None else None
    then = op_of(parent) if parent is not None and loss is None else None
    return Broadcast(op=loss or op_of(node), prediction_shape=pred, result_shape=result, then=then, loss=loss)


#: losses whose constant-prediction level is known (signals/levels.py), by the function they come from
LEVEL_LOSSES = frozenset({"cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                          "mse_loss", "poisson_nll_loss"})


def _constant(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.requires_grad:
        return float(value)  # a sampled step's one extra copy (the live checks sync anyway)
    return None


def root_loss(root: Any, model_output: Any = None) -> RootLoss | None:
    """The loss function ``root`` computes, looking through a constant factor (``loss / k``, ``loss * c``).

    Recognised: PyTorch's loss nodes (mean reduction, no class or positive weights) and the Poisson NLL as
    ``F.poisson_nll_loss`` writes it or as it is written by hand, ``mean(exp(z) - y * z)`` on the log-rate
    or ``mean(r - y * log(r + eps))`` on the rate. Anything else (a sum of losses, a penalty added): None.
    ``model_output``: the grad_fn of the model's output, when the front end saw it (``from_output``).
    """
    node, factor = root, 1.0
    for _ in range(3):
        op = op_of(node)
        if op not in ("mul", "div"):
            break
        grads = [i for i, (c, _) in enumerate(node.next_functions) if c is not None]
        if len(grads) != 1 or (op == "div" and grads[0] != 0):
            return None
        other = _constant(_saved(node, "other" if grads[0] == 0 else "self"))
        if other is None or other == 0 or not math.isfinite(other):
            return None
        factor = factor * other if op == "mul" else factor / other
        node = node.next_functions[grads[0]][0]
    name = node.name()
    children = [c for c, _ in node.next_functions]
    first = children[0] if children else None
    if name in LOSS_NODES:
        fn = LOSS_NODES[name]
        if fn == "nll_loss" and first is not None and op_of(first) == "log_softmax":
            fn = "cross_entropy"
        if fn not in LEVEL_LOSSES or _saved(node, "reduction") not in (None, 1):
            return None
        if _saved(node, "weight") is not None or _saved(node, "pos_weight") is not None:
            return None
        ignore = _saved(node, "ignore_index")
        tgt, pred = _saved(node, "target"), _saved(node, "self")
        fed = [first]
        if fn == "cross_entropy" and first is not None:  # the logits, or log-probabilities the model returns
            inner = [c for c, _ in first.next_functions if c is not None]
            fed = [first, inner[0]] if len(inner) == 1 else [first]
        return RootLoss(fn, factor, tgt if isinstance(tgt, torch.Tensor) else None,
                        shape_of(first) if first is not None else None,
                        (ignore if ignore < 2**63 else ignore - 2**64) if isinstance(ignore, int) else None,
                        pred if isinstance(pred, torch.Tensor) else None,
                        from_output=model_output is not None and any(_reaches(f, model_output) for f in fed))
    if op_of(node) == "mean" and first is not None:
        return _poisson(first, factor)
    return None


def _reaches(node: Any, target: Any) -> bool:
    """``node`` is ``target``, or leads to it through value-keeping reshapes only (one input each)."""
    for _ in range(20):
        if node is None:
            return False
        if node is target:
            return True
        children = [c for c, _ in node.next_functions if c is not None]
        if op_of(node) not in VIEWS or len(children) != 1:
            return False
        node = children[0]
    return False


def _poisson(sub: Any, factor: float) -> RootLoss | None:
    """``exp(z) - y * z`` or ``r - y * log(r + eps)``: the Poisson NLL without its Stirling term."""
    if op_of(sub) != "sub" or len(sub.next_functions) != 2:
        return None
    left, right = sub.next_functions[0][0], sub.next_functions[1][0]
    if left is None or right is None or op_of(right) != "mul":
        return None
    sides = [c for c, _ in right.next_functions]
    if len(sides) != 2 or (sides[0] is None) == (sides[1] is None):
        return None  # both factors carry gradient, or neither: not target x prediction
    pred = sides[1] if sides[0] is None else sides[0]
    target = _saved(right, "self" if sides[0] is None else "other")
    if op_of(left) == "exp":
        rate = _saved(left, "result")  # exp(z): the rate
    elif op_of(pred) == "log":
        rate = _saved(pred, "self")  # log(r + eps): the rate, give or take the epsilon
    else:
        return None
    return RootLoss("poisson_nll_loss", factor, target if isinstance(target, torch.Tensor) else None,
                    shape_of(pred), prediction=rate if isinstance(rate, torch.Tensor) else None)

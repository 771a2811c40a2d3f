"""Forensics, on trigger only: which op produced the NaN (TM210), and which rows of the batch (TM313).

When a step's loss or gradients turn non-finite, :class:`Forensics` (a Medic callback, added by
``Medic(..., loss_fn=...)``) replays the offending batch:

* :func:`trace_nonfinite` runs the forward and the loss on the current weights under an op watcher and
  names the first op that turned finite inputs into a non-finite output, with its module and the range
  of its input ("`torch.log` in `loss` received values in [-0.31, 4.2]; 17 of 64 were <= 0"). When the
  forward is finite and the gradients are not, it replays the backward on a copy with a hook on every
  autograd node and names the first node whose incoming gradients were finite and outgoing ones not
  (``torch.autograd.detect_anomaly`` names the same node, by raising; hooks let the replay finish and
  map the node back to the forward op and its module).
* :func:`bisect_rows` splits the batch in halves and recurses into the halves whose loss stays
  non-finite, until single rows remain: about ``2 k log2(B)`` forward passes for k bad rows of B,
  counted in the result. Rows are named by dataset index when the batch carries it
  (``batch=(x, y, idx)``, see :class:`WithIndex`), else by position and content hash.

In heal mode the rows are quarantined in ``medic.quarantined``: a later batch that contains them is
recomputed without them (:meth:`Forensics.on_loss`), and :class:`QuarantineSampler` leaves them out of
later epochs. Nothing here runs on a healthy step: the only per-step cost, once something is
quarantined, is one small check of the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainmedic.callbacks import MedicCallback
from trainmedic.quiet import silenced
from trainmedic.replay import (
    Abort,
    Batch,
    OpWatcher,
    all_finite,
    call_model,
    copy_for_replay,
    fmt_num,
    isolated,
    nonfinite_rows,
    row_hash,
    split_batch,
    tensor_args,
    user_location,
)

# op -> (its input's forbidden region in words, a predicate on the input, which argument is the input)
_LOG = ("<= 0", lambda x: x <= 0)
FORWARD_DOMAINS: dict[str, tuple[str, Any, int]] = {
    "log": (*_LOG, 0), "log2": (*_LOG, 0), "log10": (*_LOG, 0),
    "log1p": ("<= -1", lambda x: x <= -1, 0),
    "sqrt": ("< 0", lambda x: x < 0, 0),
    "rsqrt": ("<= 0", lambda x: x <= 0, 0),
    "reciprocal": ("== 0", lambda x: x == 0, 0),
    "div": ("== 0", lambda x: x == 0, 1), "truediv": ("== 0", lambda x: x == 0, 1),
    "true_divide": ("== 0", lambda x: x == 0, 1), "rdiv": ("== 0", lambda x: x == 0, 0),
    "rtruediv": ("== 0", lambda x: x == 0, 0),
    "acos": ("outside [-1, 1]", lambda x: x.abs() > 1, 0), "asin": ("outside [-1, 1]", lambda x: x.abs() > 1, 0),
    "atanh": ("outside (-1, 1)", lambda x: x.abs() >= 1, 0),
}
BACKWARD_DOMAINS: dict[str, tuple[str, Any, int]] = {
    "sqrt": ("== 0 (the derivative of sqrt is infinite there)", lambda x: x == 0, 0),
    "log": ("== 0 (the derivative of log is infinite there)", lambda x: x == 0, 0),
    "div": ("== 0", lambda x: x == 0, 1), "truediv": ("== 0", lambda x: x == 0, 1),
    "norm": ("of norm 0 (the gradient of a norm at 0 is 0/0)", None, 0),
    "pow": ("== 0 with an exponent below 1", lambda x: x == 0, 0),
}
DISPLAY = {"div": "division (/)", "truediv": "division (/)", "true_divide": "division (/)",
           "rdiv": "division (/)", "rtruediv": "division (/)", "pow": "torch.pow (**)", "rpow": "torch.pow (**)",
           "matmul": "matmul (@)", "mul": "multiplication (*)", "sub": "subtraction (-)", "add": "addition (+)"}


#: what a TM313 message says when the batch carried no dataset indices
NO_INDEX = ("the batch carried no dataset indices: wrap the dataset in trainmedic.WithIndex, or read it through "
            "a DataLoader under trainmedic run")

_DIVISIONS = frozenset({"div", "truediv", "true_divide", "rdiv", "rtruediv", "reciprocal"})


def display(name: str) -> str:
    return DISPLAY.get(name, f"torch.{name}")


def _summary(x: torch.Tensor, name: str, domains: dict[str, tuple[str, Any, int]]) -> dict[str, Any]:
    x = x.detach()
    finite = x[torch.isfinite(x)] if x.is_floating_point() else x
    ev: dict[str, Any] = {"numel": x.numel()}
    if finite.numel():
        ev["min"], ev["max"] = float(finite.min()), float(finite.max())
    dom = domains.get(name)
    if dom is not None and dom[1] is not None:
        ev["domain"] = dom[0]
        ev["outside"] = int(dom[1](x).sum())
    return ev


def _pow_summary(base: Any, exponent: Any) -> dict[str, Any] | None:
    if not isinstance(base, torch.Tensor):
        return None
    b = base.detach()
    ev: dict[str, Any] = {"numel": b.numel(), "min": float(b.min()), "max": float(b.max())}
    if isinstance(exponent, (int, float)):
        if float(exponent) != int(exponent):
            ev["domain"], ev["outside"] = "< 0 (with a fractional exponent)", int((b < 0).sum())
        elif exponent < 0:
            ev["domain"], ev["outside"] = "== 0 (with a negative exponent)", int((b == 0).sum())
    return ev


def _input_for(name: str, args: tuple, domains: dict[str, tuple[str, Any, int]]) -> Any:
    dom = domains.get(name)
    i = dom[2] if dom else 0
    return args[i] if len(args) > i else None


@dataclass
class Origin:
    """Where the first non-finite value came from."""

    kind: str  # "forward", "backward", "data", "weights", "none"
    op: str | None = None
    where: str | None = None  # the module (or "loss")
    location: str | None = None  # file:line of the user's code
    input: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        if self.kind in ("forward", "backward") and self.op:
            inp = self.input
            rng = f" values in [{fmt_num(inp['min'])}, {fmt_num(inp['max'])}]" if "min" in inp else ""
            bad = ""
            if inp.get("outside"):
                bad = f"; {inp['outside']} of {inp['numel']} were {inp['domain']}"
            at = f" ({self.location})" if self.location else ""
            if self.op in _DIVISIONS and rng:
                rng = rng.replace(" values in", " a denominator in")
            if self.kind == "forward":
                if rng:
                    return f"`{display(self.op)}` in `{self.where}` received{rng}{bad}{at}"
                return f"`{display(self.op)}` in `{self.where}` produced a non-finite value from finite inputs{at}"
            return (f"the backward of `{display(self.op)}` in `{self.where}` produced NaN/Inf although the forward "
                    f"was finite: its input had{rng}{bad}{at}")
        if self.kind == "data":
            return f"the batch itself holds NaN/Inf in {self.detail.get('rows', '?')} row(s)"
        if self.kind == "weights":
            return "the weights are already non-finite"
        return "the replay did not reproduce the non-finite value"

    def as_evidence(self) -> dict[str, Any]:
        return {"kind": self.kind, "op": self.op, "module": self.where, "location": self.location,
                "input": self.input, **self.detail}


class ForwardTracer(OpWatcher):
    """Stops the replay at the first op whose output is non-finite; records every op's autograd node."""

    def __init__(self, record_nodes: bool = False) -> None:
        super().__init__()
        self.origin: Origin | None = None
        self.record_nodes = record_nodes
        self.nodes: dict[Any, dict[str, Any]] = {}
        # In the loss, tensors are tagged by what they derive from: "prediction" and/or "target".
        self.sources: dict[int, frozenset[str]] = {}
        self._keep: list[torch.Tensor] = []

    def tag(self, obj: Any, source: str) -> None:
        for t in ([obj] if isinstance(obj, torch.Tensor) else obj if isinstance(obj, (tuple, list)) else []):
            if isinstance(t, torch.Tensor):
                self.sources[id(t)] = frozenset({source})
                self._keep.append(t)

    def source_of(self, t: Any) -> str:
        if not self.sources:
            return "model"  # the forward of the model: inputs and weights
        lab = self.sources.get(id(t), frozenset()) if isinstance(t, torch.Tensor) else frozenset()
        return "+".join(sorted(lab)) if lab else "constant"

    def after(self, name: str, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        outs = [out] if isinstance(out, torch.Tensor) else [o for o in out if isinstance(o, torch.Tensor)] \
            if isinstance(out, (tuple, list)) else []
        if not outs:
            return
        if self.sources:
            tens = tensor_args(args, kwargs)
            lab: frozenset[str] = frozenset().union(*(self.sources.get(id(t), frozenset()) for t in tens))
            for o in outs:
                if lab:
                    self.sources[id(o)] = lab
                    self._keep.append(o)
                else:
                    self.sources.pop(id(o), None)
        if self.record_nodes:
            for o in outs:
                node = o.grad_fn
                if node is not None and node not in self.nodes:
                    self.nodes[node] = {"name": name, "where": self.where(), "location": user_location(),
                                        "args": args}
            return
        if all(bool(torch.isfinite(o).all()) for o in outs if o.is_floating_point() or o.is_complex()):
            return
        tens = tensor_args(args, kwargs)
        inputs_finite = all(bool(torch.isfinite(t).all()) for t in tens if t.is_floating_point())
        if name in ("pow",) and len(args) >= 2:
            summary = _pow_summary(args[0], args[1]) or {}
        else:
            x = _input_for(name, args, FORWARD_DOMAINS)
            summary = _summary(x, name, FORWARD_DOMAINS) if isinstance(x, torch.Tensor) else {}
        if name in ("exp", "expm1") and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            lim = math.log(torch.finfo(args[0].dtype).max)
            summary["domain"], summary["outside"] = f"> {lim:.1f} (overflow)", int((args[0] > lim).sum())
        x = _input_for(name, args, FORWARD_DOMAINS)
        self.origin = Origin("forward", name, self.where(), user_location(), summary,
                             {"inputs_finite": inputs_finite, "source": self.source_of(x)})
        raise Abort


def rows_to_blame(origin: Origin) -> bool:
    """Can single rows be dirty here? Yes when the batch holds NaN/Inf, or when the op that broke took
    a value derived from the target alone (``log(y)`` with a label of 0). Not when it came out of the model
    or the prediction (``log(pred)`` with pred <= 0, an overflow in a diverged layer): that is the model's
    or the loss's fault, and quarantining the rows it happens on would hide it (TM210 names it)."""
    if origin.kind == "data":
        return True
    return origin.kind == "forward" and origin.detail.get("source") == "target"


def _walk(root: Any) -> Iterator[Any]:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        for nxt, _ in getattr(node, "next_functions", ()):
            stack.append(nxt)


def _finite_all(ts: Any) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in ts)


def _loss_scope(loss_fn: Any) -> str:
    return f"loss ({type(loss_fn).__name__})" if isinstance(loss_fn, nn.Module) else "loss"


def trace_nonfinite(model: nn.Module, loss_fn: Any, batch: Any) -> Origin:
    """Replay ``batch`` on the current weights and name the origin of the first non-finite value.

    The forward runs on the real model without gradients (buffers and RNG restored); the backward,
    only when the forward was finite, on a deep copy. Never raises for the user's model.
    """
    b = split_batch(batch)
    if b is None:
        return Origin("none", detail={"reason": "batch is not (inputs, target[, indices])"})
    rows = sorted(nonfinite_rows(b.inputs, b.size) | nonfinite_rows(b.target, b.size))
    if rows:
        return Origin("data", detail={"rows": len(rows), "positions": rows[:50]})
    bad_w = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if bad_w:
        return Origin("weights", detail={"parameters": bad_w[:20]})
    tracer = ForwardTracer()
    tracer.attach(model)
    loss = None
    try:
        with silenced(), isolated(model):
            with tracer:
                out = call_model(model, b.inputs)
                if loss_fn is not None:
                    tracer.tag(out, "prediction")
                    tracer.tag(b.target, "target")
                    with tracer.scope(_loss_scope(loss_fn)):
                        loss = loss_fn(out, b.target)
    except Abort:
        pass
    finally:
        tracer.detach()
    if tracer.origin is not None:
        return tracer.origin
    if loss_fn is None:
        return Origin("none", detail={"reason": "the model's output is finite; pass loss_fn= to replay the loss"})
    if loss is not None and not all_finite(loss):
        return Origin("none", detail={"reason": "the loss is non-finite but no watched op produced it"})
    return _trace_backward(model, loss_fn, b)


def _trace_backward(model: nn.Module, loss_fn: Any, b: Batch) -> Origin:
    m, _, lf = copy_for_replay(model, None, loss_fn if isinstance(loss_fn, nn.Module) else None)
    lf = lf if lf is not None else loss_fn
    cuda = sorted({p.device.index or 0 for p in m.parameters() if p.device.type == "cuda"})
    rec = ForwardTracer(record_nodes=True)
    rec.attach(m)
    first: list[Any] = []
    handles = []
    try:
        with torch.random.fork_rng(devices=cuda), silenced(), torch.enable_grad():
            with rec:
                out = call_model(m, b.inputs)
                with rec.scope(_loss_scope(loss_fn)):
                    loss = lf(out, b.target)
            rec.detach()
            if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
                return Origin("none", detail={"reason": "the loss has no autograd graph"})
            loss = loss if loss.numel() == 1 else loss.sum()

            for node in _walk(loss.grad_fn):
                def hook(grad_inputs: Any, grad_outputs: Any, node: Any = node) -> None:
                    if not first and _finite_all(grad_outputs) and not _finite_all(grad_inputs):
                        first.append(node)

                try:
                    handles.append(node.register_hook(hook))
                except (RuntimeError, AttributeError):
                    pass
            loss.backward()
    finally:
        rec.detach()
        for h in handles:
            h.remove()
    if not first:
        return Origin("none", detail={"reason": "the backward replay stayed finite"})
    node = first[0]
    info = rec.nodes.get(node)
    node_name = node.name()
    if info is None:
        return Origin("backward", node_name, "model", None, {}, {"autograd_node": node_name})
    name = info["name"]
    x = _input_for(name, info["args"], BACKWARD_DOMAINS)
    summary: dict[str, Any] = {}
    if isinstance(x, torch.Tensor):
        summary = _summary(x, name, BACKWARD_DOMAINS)
        if name == "norm":
            summary["domain"] = BACKWARD_DOMAINS["norm"][0]
    return Origin("backward", name, info["where"], info["location"], summary, {"autograd_node": node_name})


# ---------------------------------------------------------------------------------------------------
# bisection
# ---------------------------------------------------------------------------------------------------
@dataclass
class BisectResult:
    positions: list[int]  # rows of the batch that make the loss non-finite
    passes: int  # forward passes used (the first one confirms the batch is non-finite)
    batch_size: int
    reproduced: bool = True
    indices: list[int] | None = None  # dataset indices, when the batch carries them
    hashes: list[str] = field(default_factory=list)
    data_nonfinite: list[int] = field(default_factory=list)  # of the positions, those whose data hold NaN/Inf

    @property
    def keys(self) -> list[int | str]:
        """What names each row in a quarantine: its dataset index when known, else its content hash."""
        return list(self.indices) if self.indices is not None else list(self.hashes)

    @property
    def named_by(self) -> str:
        return "dataset index" if self.indices is not None else "content hash"

    def message(self) -> str:
        if not self.reproduced:
            return (f"the batch of {self.batch_size} was finite when replayed row-independently (eval mode): "
                    "no single rows to blame")
        k = len(self.positions)
        if self.indices is not None:
            names = f"dataset rows {', '.join(map(str, self.indices[:10]))}" + (" ..." if k > 10 else "")
        else:
            names = (f"rows at positions {', '.join(map(str, self.positions[:10]))} of the batch, named by content "
                     f"hash {', '.join(self.hashes[:3])}{' ...' if k > 3 else ''} ({NO_INDEX})")
        why = " (their inputs or targets hold NaN/Inf)" if self.data_nonfinite and \
            len(self.data_nonfinite) == k else ""
        return (f"{k} of {self.batch_size} rows make the loss non-finite: {names}{why}; found in "
                f"{self.passes} forward passes")


def bisect_rows(model: nn.Module, loss_fn: Any, batch: Any, *, max_passes: int | None = None) -> BisectResult | None:
    """Find the rows of ``batch`` whose presence makes the loss (or, without loss_fn, the output) non-finite.

    Rows are evaluated in eval mode (BatchNorm on running statistics, no dropout) so that each row's
    loss depends on that row alone; the model's buffers, modes and the RNG are restored afterwards.
    Group testing by halving: a subset is split, a clean left half implies a bad right half, so k bad
    rows among B cost about ``2 k log2(B / k) + 1`` passes. Returns None when the batch has no rows.
    """
    b = split_batch(batch)
    if b is None or not b.size:
        return None
    n = int(b.size)
    limit = max_passes or 8 * n
    passes = 0

    def bad(rows: torch.Tensor) -> bool:
        nonlocal passes
        passes += 1
        sub = b.select(rows)
        out = call_model(model, sub.inputs)
        if loss_fn is not None:
            return not all_finite(loss_fn(out, sub.target))
        return not (all_finite(out) and all_finite(sub.target))

    found: list[int] = []

    def search(rows: torch.Tensor) -> None:  # ``rows`` is known to contain a bad row
        if passes >= limit:
            return
        if len(rows) == 1:
            found.append(int(rows[0]))
            return
        mid = len(rows) // 2
        left, right = rows[:mid], rows[mid:]
        if bad(left):
            search(left)
            if bad(right):
                search(right)
        else:
            search(right)

    with silenced(), isolated(model, eval_mode=True):
        everything = torch.arange(n)
        if not bad(everything):
            return BisectResult([], passes, n, reproduced=False)
        search(everything)
    found.sort()
    data_bad = nonfinite_rows(b.inputs, n) | nonfinite_rows(b.target, n)
    idx = [int(b.indices[i]) for i in found] if b.indices is not None else None
    hashes = [row_hash(b, i) for i in found]
    return BisectResult(found, passes, n, True, idx, hashes, [i for i in found if i in data_bad])


# ---------------------------------------------------------------------------------------------------
# the callback, and the data-side helpers
# ---------------------------------------------------------------------------------------------------
class Forensics(MedicCallback):
    """On a non-finite step: TM210 (the op) and TM313 (the rows); in heal mode, quarantine the rows.

    Args:
        loss_fn: ``loss_fn(model(inputs), target)``; defaults to ``medic.loss_fn``. Without it TM210 can
            only follow the model's forward and TM313 bisects on the output's finiteness.
        max_runs: forensic replays per run (each costs a forward replay plus ~2k log2(B) forward passes).
        quarantine: in heal mode, quarantine the rows TM313 names and leave them out from then on.
    """

    name = "forensics"

    def __init__(self, loss_fn: Any = None, max_runs: int = 3, quarantine: bool = True) -> None:
        self.loss_fn = loss_fn
        self.max_runs = max_runs
        self.quarantine = quarantine
        self.runs = 0
        self.masked_steps = 0
        self.last_result: BisectResult | None = None
        self.found: list[BisectResult] = []
        self.last_origin: Origin | None = None

    def _loss_fn(self, medic: Any) -> Any:
        return self.loss_fn if self.loss_fn is not None else getattr(medic, "loss_fn", None)

    def on_attach(self, medic: Any) -> None:
        if not isinstance(getattr(medic, "quarantined", None), set):
            medic.quarantined = set()

    def on_nonfinite(self, medic: Any, step: int, signals: Any, finding: Any, batch: Any) -> None:
        if self.runs >= self.max_runs or batch is None:
            return
        b = split_batch(batch)
        if b is None:
            return
        if not all(bool(torch.isfinite(p.detach()).all()) for p in medic.model.parameters()):
            return  # the weights are already poisoned (watch mode applied a NaN step): nothing to replay
        self.runs += 1
        t0 = time.perf_counter()
        loss_fn = self._loss_fn(medic)
        origin = trace_nonfinite(medic.model, loss_fn, b)
        self.last_origin = origin
        if origin.kind in ("forward", "backward"):
            medic.report("TM210", origin.message(), step=step, evidence=origin.as_evidence(),
                         key=f"TM210:{origin.op}:{origin.where}")
        passes = 0
        loss_nonfinite = not getattr(signals, "loss_finite", True)
        if loss_nonfinite and rows_to_blame(origin):
            res = bisect_rows(medic.model, loss_fn, b)
            self.last_result = res
            if res is not None:
                passes = res.passes
                if res.positions:
                    heal = medic.mode == "heal" and self.quarantine
                    ev = {"positions": res.positions, "indices": res.indices, "hashes": res.hashes,
                          "named_by": res.named_by, "forward_passes": res.passes, "batch_size": res.batch_size,
                          "data_nonfinite": res.data_nonfinite}
                    stored = medic.report("TM313", res.message(), step=step, evidence=ev,
                                          action="quarantined" if heal else None, key="TM313")
                    self._merge(stored, res)
                    if heal:
                        new = [k for k in res.keys if k not in medic.quarantined]
                        medic.quarantined.update(res.keys)
                        medic.record_action("quarantine", "TM313", step=step, rows=new,
                                            total=len(medic.quarantined), named_by=res.named_by)
        medic.record_action("forensics", getattr(finding, "code", "TM301"), step=step,
                            seconds=round(time.perf_counter() - t0, 4), forward_passes=passes,
                            origin=origin.kind)

    def _merge(self, stored: Any, res: BisectResult) -> None:
        """One TM313 finding per run: later bisections add their rows to it."""
        self.found.append(res)
        if len(self.found) == 1:
            return
        ev = stored.evidence
        keys: list[Any] = []
        for r in self.found:
            keys += [k for k in r.keys if k not in keys]
        by_index = all(r.indices is not None for r in self.found)
        named = "dataset rows" if by_index else f"rows named by dataset index or content hash ({NO_INDEX})"
        ev["named_by"] = "dataset index" if by_index else "dataset index or content hash"
        ev["rows"] = keys[:200]
        ev["forward_passes_total"] = sum(r.passes for r in self.found)
        ev["bisections"] = len(self.found)
        stored.message = (f"{len(keys)} dirty rows found in {len(self.found)} batches: {named} "
                          f"{', '.join(map(str, keys[:10]))}{' ...' if len(keys) > 10 else ''}; "
                          f"{ev['forward_passes_total']} forward passes in all")

    def on_loss(self, medic: Any, step: int, loss: Any, batch: Any) -> Any:
        """Heal mode, once rows are quarantined: recompute a batch that contains them without them."""
        q = getattr(medic, "quarantined", None)
        if not q or medic.mode != "heal" or batch is None or not isinstance(loss, torch.Tensor):
            return None
        loss_fn = self._loss_fn(medic)
        b = split_batch(batch)
        if loss_fn is None or b is None or not b.size:
            return None
        n = int(b.size)
        ints = [k for k in q if isinstance(k, int)]
        if b.indices is not None and ints:
            mask = torch.isin(b.indices, torch.tensor(ints, device=b.indices.device)).cpu()
            if not bool(mask.any()):
                return None
        else:
            if bool(torch.isfinite(loss.detach()).all()):
                return None
            mask = torch.tensor([row_hash(b, i) in q for i in range(n)])
            if not bool(mask.any()):
                return None
        keep = torch.nonzero(~mask).flatten()
        if keep.numel() == 0:
            return None
        medic.optimizer.zero_grad(set_to_none=True)
        sub = b.select(keep)
        new = loss_fn(call_model(medic.model, sub.inputs), sub.target)
        scaler = getattr(medic, "scaler", None)
        (scaler.scale(new) if scaler is not None else new).backward()
        self.masked_steps += 1
        medic.record_action("quarantine-mask", "TM313", step=step, rows_removed=int(mask.sum()),
                            rows_kept=int(keep.numel()))
        return new


class WithIndex(torch.utils.data.Dataset):
    """Wrap a map-style dataset so that each item also carries its index: ``(x, y) -> (x, y, i)``.

    With the default collate, batches become ``[x, y, idx]``: pass them as ``medic.step(loss, batch=batch)``
    and TM313 names dataset rows instead of positions, and quarantine follows them across epochs.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if isinstance(item, tuple):
            return (*item, index)
        if isinstance(item, list):
            return [*item, index]
        return (item, index)


class QuarantineSampler(torch.utils.data.Sampler):
    """A sampler that skips the dataset indices quarantined so far (read live at each draw).

    ``QuarantineSampler(dataset, medic, shuffle=True)`` or ``QuarantineSampler(some_sampler, medic)``;
    ``medic`` may also be a plain set of indices. Use it with :class:`WithIndex` so that TM313 reports
    dataset indices::

        ds = trainmedic.WithIndex(dataset)
        loader = DataLoader(ds, batch_size=64, sampler=trainmedic.QuarantineSampler(ds, medic, shuffle=True))
    """

    def __init__(self, base: Any, quarantined: Any, shuffle: bool = False,
                 generator: torch.Generator | None = None) -> None:
        if isinstance(base, torch.utils.data.Sampler):
            self.base = base
        elif shuffle:
            self.base = torch.utils.data.RandomSampler(base, generator=generator)
        else:
            self.base = torch.utils.data.SequentialSampler(base)
        self._source = quarantined

    @property
    def quarantined(self) -> set[Any]:
        q = getattr(self._source, "quarantined", self._source)
        return q if isinstance(q, set) else set(q or ())

    def __iter__(self) -> Iterator[int]:
        for i in self.base:
            if i not in self.quarantined:
                yield i

    def __len__(self) -> int:
        q = self.quarantined
        return len(self.base) - sum(1 for k in q if isinstance(k, int))  # type: ignore[arg-type]


__all__ = ["BisectResult", "Forensics", "Origin", "QuarantineSampler", "WithIndex", "bisect_rows",
           "trace_nonfinite"]

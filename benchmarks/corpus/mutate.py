"""Mutation operators: real training faults written into the SOURCE of ordinary PyTorch programs.

Each operator looks for its pattern in a program's syntax tree (an optimizer constructor with a learning
rate, a training-time loss call, a standardization expression, a ``zero_grad()`` statement...) and
rewrites exactly that text; where the pattern does not occur the operator does not apply. They follow the
practitioner notes (``/work/shared/seeds``) and the DeepCrime taxonomy of real training faults (Humbatova,
Jahangirova, Tonella: "DeepCrime: mutation testing of deep learning systems based on real faults",
ISSTA 2021).

Each operator declares:
  * ``expected``: trainmedic codes that describe the fault or its visible consequence; a mutant counts
    as detected when any one of them is found;
  * ``cause``: the codes that name the cause (the learning rate, the data, the wiring) rather than a
    symptom (NaN); ``None`` when no existing code names this cause, and then ``proposed`` names the
    code that should exist.

    python benchmarks/corpus/mutate.py [PROGRAM ...]      # list the mutants of the base programs
    python benchmarks/corpus/mutate.py --show house_prices:lr_x100:0   # print one mutant's diff
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from astedit import Edit, Source, apply_edits, dotted  # noqa: E402

MAX_SITES = 2  # mutants per operator and program (one per optimizer, or per site of a pattern)

# codes whose explanation names the learning rate; TM317 not-learning and TM319 harmful-rate-raise (issue 12,
# written after the corpus) name it too: added in round three (RESULTS.md), as TM318 dead-network to the symptoms
LR = frozenset({"TM209", "TM305", "TM306", "TM307", "TM317", "TM319"})
LR_SYMPTOMS = frozenset({"TM303", "TM301", "TM302", "TM311", "TM318"})
FEATURES = re.compile(r"^(x|X)_?(tr|train)$|^train_(x|X)$")
LABELS = re.compile(r"^(y|Y)_?(tr|train)$|^train_(y|Y)$")
#: names that hold model inputs: x, X_train, raw_x, features, images, pixels, inputs, d (a sklearn Bunch)
FEATURE_LIKE = re.compile(r"^(x|X)|(^|_)(x|X)(_|$)|feat|image|pixel|digit|input|^d$")
ACTIVATIONS = {"ReLU", "GELU", "LeakyReLU", "Tanh", "ELU", "SiLU"}
F_ACTIVATIONS = {"relu", "gelu", "leaky_relu", "tanh", "elu", "silu"}

HELPERS = {
    "nan_rows": '''
def _tm_nan_rows(t):
    """mutation: three rows get a missing value (NaN) in one field"""
    import numpy as _np
    if not _np.issubdtype(_np.asarray(t[:1]).dtype, _np.floating):
        raise RuntimeError("mutation not applicable: the features are not floating point")
    t = t.copy() if isinstance(t, _np.ndarray) else t.clone()
    flat = t.reshape(len(t), -1)
    for row in (len(t) // 7, len(t) // 2, len(t) - 5):
        flat[row, 0] = float("nan")
    return flat.reshape(t.shape)
''',
    "sentinel_rows": '''
def _tm_sentinel_rows(t):
    """mutation: one column of every 50th row holds the sentinel -9999 (a missing reading)"""
    import numpy as _np
    if not _np.issubdtype(_np.asarray(t[:1]).dtype, _np.floating):
        raise RuntimeError("mutation not applicable: the features are not floating point")
    t = t.copy() if isinstance(t, _np.ndarray) else t.clone()
    flat = t.reshape(len(t), -1)
    flat[::50, 1 % flat.shape[1]] = -9999.0
    return flat.reshape(t.shape)
''',
    "permute": '''
def _tm_permute(t):
    """mutation: the training labels are shuffled (a fixed permutation)"""
    import numpy as _np
    perm = _np.random.RandomState(12345).permutation(len(t))
    return t[perm] if isinstance(t, _np.ndarray) else t[__import__("torch").from_numpy(perm)]
''',
    "sorted_dataset": '''
def _tm_sorted_dataset(*tensors):
    """mutation: the training set ordered by its label (class-sorted), served without shuffling"""
    import torch as _torch
    order = _torch.argsort(_torch.as_tensor(tensors[-1]).reshape(len(tensors[-1]), -1)[:, 0], stable=True)
    return _torch.utils.data.TensorDataset(*[t[order] for t in tensors])
''',
    "label_order": '''
def _tm_label_order(labels):
    """mutation: minibatches are taken in label order instead of a random permutation"""
    import torch as _torch
    labels = _torch.as_tensor(labels)
    return _torch.argsort(labels.reshape(len(labels), -1)[:, 0], stable=True)
''',
}


@dataclass
class Site:
    where: str
    edits: list[Edit]
    helpers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operator:
    name: str
    summary: str
    origin: str
    expected: frozenset[str]
    cause: frozenset[str] | None
    find: Callable[[Source], list[Site]] = field(repr=False, compare=False)
    proposed: str | None = None


@dataclass
class Mutant:
    program: str
    operator: Operator
    index: int
    where: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.program}:{self.operator.name}:{self.index}"


# -----------------------------------------------------------------------------------------------------
# shared site finders
# -----------------------------------------------------------------------------------------------------
def _kw(call: ast.Call, name: str) -> ast.keyword | None:
    return next((k for k in call.keywords if k.arg == name), None)


def _line(src: Source, node: ast.AST) -> str:
    return f"line {node.lineno}: {src.seg(src.statement_of(node)).splitlines()[0].strip()[:80]}"


def _add_kw(src: Source, call: ast.Call, text: str) -> Edit:
    """Insert the keyword argument ``text`` before the closing parenthesis of ``call``."""
    _, end = src.span(call)
    before = src.text[:end - 1].rstrip()
    if before.endswith("("):
        return Edit(end - 1, end - 1, text)
    return Edit(end - 1, end - 1, " " + text if before.endswith(",") else ", " + text)


def _lr_edits(src: Source, call: ast.Call, factor: float) -> list[Edit]:
    """Multiply every learning rate an optimizer gets (``lr=``, param groups, a OneCycle's ``max_lr``)."""
    edits: list[Edit] = []
    kw = _kw(call, "lr")
    if kw is not None:
        edits += src.wrap(kw.value, "(", f") * {factor:g}")
    elif len(call.args) >= 2:
        edits += src.wrap(call.args[1], "(", f") * {factor:g}")
    groups = call.args[0] if call.args else None
    group_lr = False
    if isinstance(groups, ast.List):
        for d in groups.elts:
            if isinstance(d, ast.Dict):
                for k, v in zip(d.keys, d.values):
                    if isinstance(k, ast.Constant) and k.value == "lr":
                        edits += src.wrap(v, "(", f") * {factor:g}")
                        group_lr = True
    if kw is None and len(call.args) < 2 and not group_lr:
        default = {"RMSprop": 1e-2, "Adagrad": 1e-2, "Adamax": 2e-3, "Adadelta": 1.0}.get(
            dotted(call.func).split(".")[-1], 1e-3)
        edits.append(_add_kw(src, call, f"lr={default * factor:g}"))
    target = src.optimizer_target(call)
    if target is not None:
        for s in src.scheduler_calls():
            if dotted(s.func).split(".")[-1] in ("OneCycleLR", "CyclicLR") and s.args and src.seg(s.args[0]) == target:
                for name in ("max_lr", "base_lr"):
                    k = _kw(s, name)
                    if k is not None:
                        edits += src.wrap(k.value, "(", f") * {factor:g}")
    return edits


def _step_statements(src: Source, target: str) -> list[ast.stmt]:
    """``target.step()`` and ``scaler.step(target)`` statements."""
    out = []
    for c in src.method_calls("step"):
        own = src.seg(c.func.value) == target and not c.args
        scaled = len(c.args) == 1 and src.seg(c.args[0]) == target
        if (own or scaled) and isinstance(src.parent.get(c), ast.Expr):
            out.append(src.parent[c])
    return out


def _data_site(src: Source, pattern: re.Pattern[str], arg_index: int) -> tuple[str, ast.stmt | ast.expr] | None:
    """The training tensor a data fault is written into.

    The last top-level assignment (in a function or module body) to a name like ``X_train``/``x_tr``
    (``y_train``/``y_tr`` for labels); else the ``arg_index``-th tensor of the ``TensorDataset`` fed to a
    shuffling ``DataLoader``. Returns ("name", statement) or ("arg", expression).
    """
    best = None
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and src.is_top_level_statement(node):
            for t in node.targets:
                for e in ast.walk(t):
                    if isinstance(e, ast.Name) and isinstance(e.ctx, ast.Store) and pattern.match(e.id):
                        if best is None or node.lineno > best[1].lineno:
                            best = (e.id, node)
    if best is not None:
        return best
    for c in src.calls():
        if dotted(c.func).split(".")[-1] == "DataLoader" and c.args:
            shuffle = _kw(c, "shuffle")
            ds = c.args[0]
            if shuffle is not None and isinstance(shuffle.value, ast.Constant) and shuffle.value.value is True \
                    and isinstance(ds, ast.Call) and dotted(ds.func).endswith("TensorDataset") \
                    and len(ds.args) > arg_index:
                return ("arg", ds.args[arg_index])
    return None


def _data_fault(helper: str, pattern: re.Pattern[str], arg_index: int) -> Callable[[Source], list[Site]]:
    def find(src: Source) -> list[Site]:
        site = _data_site(src, pattern, arg_index)
        if site is None:
            return []
        name, node = site
        fn = f"_tm_{helper}"
        if name == "arg":
            return [Site(_line(src, node), src.wrap(node, f"{fn}(", ")"), (helper,))]
        return [Site(_line(src, node), [src.insert_after(node, f"{name} = {fn}({name})")], (helper,))]
    return find


def _optimizer_sites(src: Source) -> list[tuple[ast.Call, str | None]]:
    return [(c, src.optimizer_target(c)) for c in src.optimizer_calls()]


# -----------------------------------------------------------------------------------------------------
# the operators' finders
# -----------------------------------------------------------------------------------------------------
def lr_scale(factor: float) -> Callable[[Source], list[Site]]:
    def find(src: Source) -> list[Site]:
        return [Site(_line(src, c), _lr_edits(src, c, factor)) for c, _ in _optimizer_sites(src)]
    return find


def find_lr_jump(src: Source) -> list[Site]:
    """Multiply the learning rate by 100 once, halfway through the outer ``for ... in range(...)`` loop."""
    sites = []
    for _call, target in _optimizer_sites(src):
        if target is None:
            continue
        steps = _step_statements(src, target)
        if not steps:
            continue
        loops = src.loops_of(steps[0])
        if not loops:
            continue
        outer = loops[-1]
        it = outer.iter if isinstance(outer, ast.For) else None
        if not (isinstance(it, ast.Call) and dotted(it.func) == "range" and isinstance(outer.target, ast.Name)):
            continue
        args = [src.seg(a) for a in it.args]
        mid = f"({args[0]}) // 2" if len(args) == 1 else f"(({args[0]}) + ({args[1]})) // 2"
        code = (f"if {outer.target.id} == {mid}:\n"
                f"    for _tm_g in {target}.param_groups:\n"
                f"        for _tm_k in ('lr', 'initial_lr', 'max_lr', 'min_lr'):\n"
                f"            if _tm_k in _tm_g:\n"
                f"                _tm_g[_tm_k] = _tm_g[_tm_k] * 100\n")
        sites.append(Site(_line(src, outer), [src.insert_in_body_start(outer, code)]))
    return sites


def find_no_zero_grad(src: Source) -> list[Site]:
    sites = []
    for call, target in _optimizer_sites(src):
        receivers = {target} | {src.seg(r) for r in src.parameter_receivers(call)}
        stmts = [src.parent[c] for c in src.method_calls("zero_grad")
                 if src.seg(c.func.value) in receivers and isinstance(src.parent.get(c), ast.Expr)]
        if stmts:
            sites.append(Site(_line(src, stmts[0]), [src.delete_stmt(s) for s in stmts]))
    return sites


def find_zero_grad_after_backward(src: Source) -> list[Site]:
    """``loss.backward(); opt.zero_grad(); opt.step()``: the step sees zeroed gradients."""
    sites = []
    for _call, target in _optimizer_sites(src):
        if target is None:
            continue
        for step in _step_statements(src, target):
            block = getattr(src.parent[step], "body", [])
            if step not in block:
                continue
            zeros = [s for s in block[:block.index(step)] if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                     and isinstance(s.value.func, ast.Attribute) and s.value.func.attr == "zero_grad"
                     and src.seg(s.value.func.value) == target]
            if zeros:
                z = zeros[-1]
                sites.append(Site(_line(src, z), [src.delete_stmt(z), src.insert_before(step, src.seg(z))]))
                break
    return sites


_UNSQUEEZE = {"unsqueeze", "view", "reshape"}
_SQUEEZE = {"squeeze", "view", "reshape", "flatten"}


def _is_unsqueeze(src: Source, node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _UNSQUEEZE):
        return False
    a = [src.seg(x).replace(" ", "") for x in node.args]
    return (node.func.attr == "unsqueeze" and a in (["1"], ["-1"])) or a == ["-1,1"] or a == ["-1", "1"]


def _is_squeeze(src: Source, node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SQUEEZE):
        return False
    a = [src.seg(x).replace(" ", "") for x in node.args]
    if node.func.attr == "squeeze":
        return a in ([], ["1"], ["-1"])
    if node.func.attr == "flatten":
        return a == []
    return a == ["-1"]


def _value_of(src: Source, name: str, before: ast.AST) -> ast.expr | None:
    """The expression last assigned to ``name`` before ``before`` in the same function."""
    fn = src.function_of(before)
    best = None
    for a in src.assignments_to(name):
        if src.function_of(a) is not fn or a.lineno > before.lineno:
            continue
        for t in a.targets:
            if isinstance(t, ast.Name) and t.id == name:
                best = a.value
            elif isinstance(t, ast.Tuple) and isinstance(a.value, ast.Tuple):
                for e, v in zip(t.elts, a.value.elts):
                    if isinstance(e, ast.Name) and e.id == name:
                        best = v
    return best


def find_target_broadcast(src: Source) -> list[Site]:
    """(B,1) vs (B,): drop the unsqueeze that gave the target its trailing 1, or the squeeze that
    removed the prediction's."""
    regression = src.loss_calls({"mse", "l1", "bce_logits", "bce", "poisson"}, training=True)
    target_edits, pred_edits, where_t, where_p = [], [], None, None
    seen: set[tuple[int, int]] = set()

    def strip(node: ast.Call, bucket: list[Edit]) -> None:
        key = src.span(node)
        if key not in seen:
            seen.add(key)
            bucket.append(src.replace(node, src.receiver(node)))

    for call in regression:
        if len(call.args) < 2:
            continue
        for arg, bucket, test in ((call.args[1], target_edits, _is_unsqueeze), (call.args[0], pred_edits, _is_squeeze)):
            node = arg
            if isinstance(node, ast.Name):
                node = _value_of(src, node.id, call)
            if node is not None and test(src, node):
                strip(node, bucket)
                if bucket is target_edits:
                    where_t = where_t or _line(src, node)
                else:
                    where_p = where_p or _line(src, node)
    # a hand-written loss: ``pred = model(x).squeeze(-1)`` then ``pred - y`` in the training loop (note 000)
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and _is_squeeze(src, node.value) and src.loops_of(node) and not src.in_eval(node):
            name, fn = node.targets[0].id, src.function_of(node)
            arithmetic = any(isinstance(b, ast.BinOp) and isinstance(b.op, ast.Sub) and src.function_of(b) is fn
                             and not src.in_eval(b) and any(isinstance(n, ast.Name) and n.id == name for n in (b.left, b.right))
                             for b in ast.walk(src.tree))
            if arithmetic:
                strip(node.value, pred_edits)
                where_p = where_p or _line(src, node)
    # a squeeze at the end of forward() feeds every loss
    for fn in ast.walk(src.tree):
        if isinstance(fn, ast.FunctionDef) and fn.name == "forward" and regression:
            for node in ast.walk(fn):
                if isinstance(node, ast.Return) and node.value is not None and _is_squeeze(src, node.value):
                    strip(node.value, pred_edits)
                    where_p = where_p or _line(src, node)
    out = []
    if target_edits:
        out.append(Site(where_t, target_edits))
    if pred_edits:
        out.append(Site(where_p, pred_edits))
    return out


def _wrap_input(fn_text: str, kinds: set[str]) -> Callable[[Source], list[Site]]:
    def find(src: Source) -> list[Site]:
        calls = [c for c in src.loss_calls(kinds, training=True) if c.args]
        if not calls:
            return []
        edits = [e for c in calls for e in src.wrap(c.args[0], fn_text + "(", ", dim=1)" if "softmax" in fn_text else ")")]
        return [Site(_line(src, calls[0]), edits)]
    return find


def find_logits_into_nll(src: Source) -> list[Site]:
    calls = src.loss_calls({"ce"}, training=True)
    edits, done = [], set()
    for c in calls:
        name = dotted(c.func)
        if name.endswith("cross_entropy"):
            edits.append(src.replace(c.func, name[: -len("cross_entropy")] + "nll_loss"))
        else:
            var = src.seg(c.func)
            for node in ast.walk(src.tree):
                if isinstance(node, ast.Assign) and any(src.seg(t) == var for t in node.targets) \
                        and isinstance(node.value, ast.Call) and var not in done:
                    done.add(var)
                    fname = dotted(node.value.func)
                    edits.append(src.replace(node.value.func, fname.replace("CrossEntropyLoss", "NLLLoss")))
    return [Site(_line(src, calls[0]), edits)] if edits else []


def find_kl_on_probs(src: Source) -> list[Site]:
    edits, first = [], None
    for c in src.loss_calls({"kl"}, training=True):
        inner = c.args[0] if c.args else None
        if isinstance(inner, ast.Call) and dotted(inner.func).endswith("log_softmax"):
            name = dotted(inner.func)
            edits.append(src.replace(inner.func, name[: -len("log_softmax")] + "softmax"))
            first = first or c
    return [Site(_line(src, first), edits)] if edits else []


def _shift_target(kinds: set[str]) -> Callable[[Source], list[Site]]:
    def find(src: Source) -> list[Site]:
        calls = [c for c in src.loss_calls(kinds, training=True) if len(c.args) >= 2]
        if not calls:
            return []
        return [Site(_line(src, calls[0]), [e for c in calls for e in src.wrap(c.args[1], "(", " + 1)")])]
    return find


def find_unscaled(src: Source) -> list[Site]:
    """Remove feature standardization: ``(X - m) / s``, ``scaler.transform(X)``, ``pixels / 16``."""
    edits, first = [], None

    def featurey(node: ast.AST) -> bool:
        base = node
        while isinstance(base, (ast.Subscript, ast.Attribute, ast.Call)):
            base = base.value if not isinstance(base, ast.Call) else base.func
        return isinstance(base, ast.Name) and FEATURE_LIKE.search(base.id) is not None

    for node in ast.walk(src.tree):
        hit = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left = node.left
            if isinstance(left, ast.BinOp) and isinstance(left.op, ast.Sub) and featurey(left.left):
                hit = left.left
            elif isinstance(node.right, ast.Constant) and node.right.value in (16, 16.0, 255, 255.0, 256) \
                    and featurey(left):
                hit = left
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("transform", "fit_transform") and len(node.args) == 1 and featurey(node.args[0]):
            hit = node.args[0]
        if hit is not None:
            edits.append(src.replace(node, src.seg(hit)))
            first = first or node
    return [Site(_line(src, first), edits)] if edits else []


def find_raw_target(src: Source) -> list[Site]:
    """Train on the raw skewed target: drop ``log1p`` on the target and ``expm1`` on the prediction."""
    logs, exps = [], []
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Assign):
            continue
        names = [e.id for t in node.targets for e in ast.walk(t) if isinstance(e, ast.Name)]
        for c in ast.walk(node.value):
            if not (isinstance(c, ast.Call) and len(c.args) == 1):
                continue
            name = dotted(c.func)
            if name in ("np.log1p", "torch.log1p", "np.log", "torch.log", "numpy.log1p") \
                    and any(re.match(r"^(y|Y)(_|$)|target", n) for n in names):
                logs.append(c)
            if name in ("np.expm1", "torch.expm1", "np.exp", "torch.exp") and any("pred" in n for n in names):
                exps.append(c)
    if not logs:
        return []
    return [Site(_line(src, logs[0]), [src.replace(c, src.seg(c.args[0])) for c in logs + exps])]


def find_counts_mse(src: Source) -> list[Site]:
    edits, first = [], None
    for c in src.loss_calls({"poisson"}, training=True):
        if len(c.args) >= 2:
            edits.append(src.replace(c, f"torch.nn.functional.mse_loss({src.seg(c.args[0])}, {src.seg(c.args[1])})"))
            first = first or c
    for node in ast.walk(src.tree):  # hand-written:  rate - y * log(rate ...)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and not src.in_eval(node) \
                and isinstance(node.right, ast.BinOp) and isinstance(node.right.op, ast.Mult) \
                and isinstance(node.right.right, ast.Call) and dotted(node.right.right.func) in ("torch.log", "log"):
            edits.append(src.replace(node, f"({src.seg(node.left)} - {src.seg(node.right.left)}) ** 2"))
            first = first or node
    return [Site(_line(src, first), edits)] if edits else []


def _init_all(init: str) -> Callable[[Source], list[Site]]:
    def find(src: Source) -> list[Site]:
        sites = []
        for call, _ in _optimizer_sites(src):
            receivers = src.parameter_receivers(call)
            if not receivers:
                continue
            stmt = src.statement_of(call)
            code = "".join(f"for _tm_p in {src.seg(r)}.parameters():\n    torch.nn.init.{init}\n" for r in receivers)
            sites.append(Site(_line(src, stmt), [src.insert_before(stmt, code)]))
        return sites
    return find


def _activation_calls(src: Source, within: ast.AST | None = None) -> list[tuple[ast.Call, str]]:
    out = []
    for c in ast.walk(within or src.tree):
        if not isinstance(c, ast.Call):
            continue
        name = dotted(c.func)
        last = name.split(".")[-1]
        if last in ACTIVATIONS and "nn" in name.split("."):
            out.append((c, name[: -len(last)] + "Sigmoid()"))
        elif last in F_ACTIVATIONS and c.args and (name.startswith(("F.", "torch.")) or "functional" in name):
            out.append((c, f"torch.sigmoid({src.seg(c.args[0])})"))
    return out


def find_sigmoid(src: Source) -> list[Site]:
    acts = _activation_calls(src)
    if not acts:
        return []
    return [Site(_line(src, acts[0][0]), [src.replace(c, text) for c, text in acts])]


def find_deep_sigmoid(src: Source) -> list[Site]:
    """A square hidden layer of an nn.Sequential becomes a stack of eight Linear+Sigmoid layers."""
    sites = []
    for c in src.calls():
        if not dotted(c.func).endswith("Sequential"):
            continue
        args = c.args
        for i in range(len(args) - 1):
            lin = args[i]
            if isinstance(lin, ast.Call) and dotted(lin.func).endswith("Linear") and len(lin.args) >= 2 \
                    and src.seg(lin.args[0]) == src.seg(lin.args[1]) \
                    and any(args[i + 1] is a for a, _ in _activation_calls(src, args[i + 1])):
                prefix = dotted(lin.func)[: -len("Linear")]
                block = ", ".join([f"{src.seg(lin)}, {prefix}Sigmoid()"] * 8)
                start, _ = src.span(lin)
                _, end = src.span(args[i + 1])
                edits = [Edit(start, end, block)]
                edits += [src.replace(a, t) for a, t in _activation_calls(src, c)
                          if src.span(a)[0] < start or src.span(a)[0] >= end]
                sites.append(Site(_line(src, lin), edits))
                break
    return sites


def find_relu_head(src: Source) -> list[Site]:
    """A ReLU after the output layer of a regression model (the target is signed)."""
    if not src.loss_calls({"mse", "l1"}, training=True):
        return []
    edits, first = [], None
    for fn in ast.walk(src.tree):
        if isinstance(fn, ast.FunctionDef) and fn.name == "forward":
            for node in ast.walk(fn):
                if isinstance(node, ast.Return) and node.value is not None:
                    v = node.value
                    inner = v.func.value if _is_squeeze(src, v) else v
                    edits += src.wrap(inner, "torch.relu(", ")")
                    first = first or node
    for c in src.calls():
        if dotted(c.func).endswith("Sequential") and c.args:
            last = c.args[-1]
            if isinstance(last, ast.Call) and dotted(last.func).endswith("Linear") and len(last.args) >= 2 \
                    and src.seg(last.args[1]) == "1":
                prefix = dotted(last.func)[: -len("Linear")]
                _, end = src.span(last)
                edits.append(Edit(end, end, f", {prefix}ReLU()"))
                first = first or c
    return [Site(_line(src, first), edits)] if edits else []


def find_freeze_typo(src: Source) -> list[Site]:
    sites = []
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Attribute) \
                and node.targets[0].attr == "requires_grad":
            t = node.targets[0]
            sites.append(Site(_line(src, node), [src.replace(t, src.seg(t.value) + ".requires_grad_")]))
    return sorted(sites, key=lambda s: s.edits[0].start)


def find_wrong_model(src: Source) -> list[Site]:
    calls = _optimizer_sites(src)
    receivers = [[src.seg(r) for r in src.parameter_receivers(c)] for c, _ in calls]
    sites = []
    for i, (c, _) in enumerate(calls):
        rs = src.parameter_receivers(c)
        if len(rs) != 1:
            continue
        # another optimizer's model, provided it already exists where this optimizer is built
        defined = {n.id for a in ast.walk(src.tree) if isinstance(a, ast.Assign) and a.lineno < c.lineno
                   for t in a.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        others = [r for j, group in enumerate(receivers) if j != i for r in group
                  if r != receivers[i][0] and r.split(".")[0] in defined]
        if others:
            sites.append(Site(_line(src, c), [src.replace(rs[0], others[0])]))
    return sites


def find_class_sorted(src: Source) -> list[Site]:
    edits, first, helpers = [], None, set()
    for c in src.calls():
        if dotted(c.func).split(".")[-1] != "DataLoader" or not c.args:
            continue
        shuffle = _kw(c, "shuffle")
        if shuffle is None or not (isinstance(shuffle.value, ast.Constant) and shuffle.value.value is True):
            continue
        ds = c.args[0]
        if isinstance(ds, ast.Name):
            ds = _value_of(src, ds.id, c)
        if isinstance(ds, ast.Call) and dotted(ds.func).endswith("TensorDataset") and len(ds.args) >= 2:
            edits += [src.replace(ds.func, "_tm_sorted_dataset"), src.replace(shuffle.value, "False")]
            helpers.add("sorted_dataset")
            first = first or c
    labels = {n for n in src.assigned_names() if LABELS.match(n)}
    for c in src.calls():
        if dotted(c.func) == "torch.randperm" and src.loops_of(c):
            fn = src.function_of(c)
            used = [n.id for n in ast.walk(fn or src.tree) if isinstance(n, ast.Name) and n.id in labels]
            if used:
                edits.append(src.replace(c, f"_tm_label_order({used[0]})"))
                helpers.add("label_order")
                first = first or c
    return [Site(_line(src, first), edits, tuple(sorted(helpers)))] if edits else []


def find_fp16_no_scaler(src: Source) -> list[Site]:
    edits, first = [], None
    scalers = set()
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and dotted(node.value.func).endswith("GradScaler"):
            scalers |= {src.seg(t) for t in node.targets}
    for c in src.calls():
        if isinstance(c.func, ast.Attribute) and src.seg(c.func.value) in scalers:
            stmt = src.statement_of(c)
            if c.func.attr == "scale" and c.args:
                edits.append(src.replace(c, src.seg(c.args[0])))
            elif c.func.attr == "step" and c.args:
                edits.append(src.replace(c, f"{src.seg(c.args[0])}.step()"))
            elif c.func.attr in ("update", "unscale_") and isinstance(stmt, ast.Expr):
                edits.append(src.delete_stmt(stmt))
            first = first or c
    for c in src.calls():
        if dotted(c.func).endswith("autocast"):
            dt = _kw(c, "dtype")
            if dt is not None and src.seg(dt.value).endswith("bfloat16"):
                edits.append(src.replace(dt.value, src.seg(dt.value).replace("bfloat16", "float16")))
                first = first or c
    return [Site(_line(src, first), edits)] if edits else []


def find_weight_decay(src: Source) -> list[Site]:
    sites = []
    for c, _ in _optimizer_sites(src):
        value = "50.0" if dotted(c.func).endswith("AdamW") else "1.0"
        kw = _kw(c, "weight_decay")
        edit = src.replace(kw.value, value) if kw is not None else _add_kw(src, c, f"weight_decay={value}")
        sites.append(Site(_line(src, c), [edit]))
    return sites


def find_tiny_batch(src: Source) -> list[Site]:
    """Batches of 2 with a 10x learning rate, where the batch size is a constant of a step-based loop."""
    edits, first = [], None
    for node in ast.walk(src.tree):
        if isinstance(node, ast.Assign) and src.is_top_level_statement(node):
            for t in node.targets:
                pairs = [(t, node.value)]
                if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(t.elts, node.value.elts))
                for name, value in pairs:
                    if isinstance(name, ast.Name) and re.match(r"^(batch|batch_size|bs|BATCH|BATCH_SIZE)$", name.id) \
                            and isinstance(value, ast.Constant) and isinstance(value.value, int):
                        edits.append(src.replace(value, "2"))
                        first = first or node
    for c in src.calls():
        if not src.loops_of(c) or src.in_eval(c):
            continue
        name = dotted(c.func)
        if name == "torch.randint" and len(c.args) >= 3 and isinstance(c.args[2], ast.Tuple) \
                and len(c.args[2].elts) == 1 and isinstance(c.args[2].elts[0], ast.Constant):
            edits.append(src.replace(c.args[2].elts[0], "2"))
            first = first or c
        elif "batch" in name.lower() and len(c.args) == 1 and isinstance(c.args[0], ast.Constant) \
                and isinstance(c.args[0].value, int):
            edits.append(src.replace(c.args[0], "2"))
            first = first or c
    if not edits:
        return []
    for c, _ in _optimizer_sites(src):
        edits += _lr_edits(src, c, 10)
    return [Site(_line(src, first), edits)]


def find_reduction_sum(src: Source) -> list[Site]:
    edits, first, done = [], None, set()
    for c in src.loss_calls({"mse", "l1", "ce", "bce_logits", "bce", "nll"}, training=True):
        if _kw(c, "reduction") is not None:
            continue
        if dotted(c.func).split(".")[-1] in ("mse_loss", "l1_loss", "cross_entropy", "nll_loss",
                                              "binary_cross_entropy", "binary_cross_entropy_with_logits",
                                              "smooth_l1_loss", "huber_loss"):
            edits.append(_add_kw(src, c, 'reduction="sum"'))
            first = first or c
            continue
        var = src.seg(c.func)
        for node in ast.walk(src.tree):
            if isinstance(node, ast.Assign) and any(src.seg(t) == var for t in node.targets) and var not in done \
                    and isinstance(node.value, ast.Call) and _kw(node.value, "reduction") is None:
                done.add(var)
                edits.append(_add_kw(src, node.value, 'reduction="sum"'))
                first = first or c
    for node in ast.walk(src.tree):  # hand-written losses: (...).mean() assigned and backpropagated
        if isinstance(node, ast.Assign) and not src.in_eval(node) and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "mean" \
                and not node.value.args and src.loops_of(node) and any(
                    isinstance(t, ast.Name) and _backpropagated(src, t.id, node) for t in node.targets):
            edits.append(src.replace(node.value.func, src.receiver(node.value) + ".sum"))
            first = first or node
    return [Site(_line(src, first), edits)] if edits else []


def _backpropagated(src: Source, name: str, after: ast.AST) -> bool:
    fn = src.function_of(after)
    return any(src.seg(c.func.value) == name and src.function_of(c) is fn for c in src.method_calls("backward"))


def find_remove_epsilon(src: Source) -> list[Site]:
    edits, first = [], None
    for c in src.calls():
        if dotted(c.func) not in ("torch.log", "torch.sqrt", "np.log", "np.sqrt") or len(c.args) != 1 or src.in_eval(c):
            continue
        a = c.args[0]
        if isinstance(a, ast.BinOp) and isinstance(a.op, ast.Add) and isinstance(a.right, ast.Constant) \
                and isinstance(a.right.value, float) and 0 < a.right.value < 1e-3:
            edits.append(src.replace(a, src.seg(a.left)))
            first = first or c
        elif isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr in ("clamp", "clamp_min"):
            edits.append(src.replace(a, src.receiver(a)))
            first = first or c
    for node in ast.walk(src.tree):  # std + eps in a standardization
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and isinstance(node.right, ast.Constant) \
                and isinstance(node.right.value, float) and 0 < node.right.value < 1e-3 \
                and isinstance(node.left, ast.Call) and isinstance(node.left.func, ast.Attribute) \
                and node.left.func.attr == "std":
            edits.append(src.replace(node, src.seg(node.left)))
            first = first or node
    return [Site(_line(src, first), edits)] if edits else []


def find_positive_link(src: Source) -> list[Site]:
    """The positive link (softplus/exp) of a predicted rate removed where its log is taken in training."""
    edits, first = [], None
    for node in ast.walk(src.tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)) \
                or src.in_eval(node):
            continue
        name = node.targets[0].id
        fn = src.function_of(node)
        logged = any(isinstance(c, ast.Call) and dotted(c.func) in ("torch.log", "torch.sqrt") and any(
            isinstance(n, ast.Name) and n.id == name for n in ast.walk(c)) and src.function_of(c) is fn
            for c in src.calls())
        if not logged:
            continue
        for c in ast.walk(node.value):
            if isinstance(c, ast.Call) and dotted(c.func) in ("F.softplus", "torch.exp", "torch.nn.functional.softplus") \
                    and len(c.args) == 1:
                edits.append(src.replace(c, src.seg(c.args[0])))
                first = first or node
    return [Site(_line(src, first), edits)] if edits else []


# -----------------------------------------------------------------------------------------------------
# the catalogue
# -----------------------------------------------------------------------------------------------------
def _op(name, summary, origin, expected, cause, find, proposed=None) -> Operator:
    return Operator(name, summary, origin, frozenset(expected), None if cause is None else frozenset(cause), find,
                    proposed)


OPERATORS: tuple[Operator, ...] = (
    _op("lr_x100", "learning rate 100x too high (every lr of one optimizer, a OneCycle's max_lr too)",
        "DeepCrime change-learning-rate; note 002", LR | LR_SYMPTOMS, LR, lr_scale(100)),
    _op("lr_x10", "learning rate 10x too high", "DeepCrime change-learning-rate; note 002",
        LR | LR_SYMPTOMS, LR, lr_scale(10)),
    _op("lr_div1000", "learning rate 1000x too low", "DeepCrime change-learning-rate; notes 001/002",
        {"TM315", "TM312", "TM209"}, {"TM315", "TM312", "TM209"}, lr_scale(0.001)),
    _op("lr_jump", "the learning rate multiplied by 100 halfway through the run", "note 004 (rebound)",
        LR | LR_SYMPTOMS, LR, find_lr_jump),
    _op("no_zero_grad", "optimizer.zero_grad() removed: gradients accumulate", "note 003; DeepCrime",
        {"TM310"}, {"TM310"}, find_no_zero_grad),
    _op("zero_grad_after_backward", "zero_grad() moved between backward() and step(): the step sees zeros",
        "common fault", {"TM312", "TM315"}, None, find_zero_grad_after_backward,
        "TM212 grads-zeroed-before-step (backward produced gradients, the optimizer stepped on all zeros)"),
    _op("target_broadcast", "(B,1) prediction against a (B,) target: the loss broadcasts to (B,B)",
        "note 000", {"TM201"}, {"TM201"}, find_target_broadcast),
    _op("softmax_into_ce", "softmax applied before a cross-entropy on logits", "notes 002/003; DeepCrime",
        {"TM202"}, {"TM202"}, _wrap_input("torch.softmax", {"ce"})),
    _op("log_softmax_into_ce", "log_softmax applied before a cross-entropy on logits (mathematically harmless)",
        "note 003", {"TM202"}, {"TM202"}, _wrap_input("torch.log_softmax", {"ce"})),
    _op("sigmoid_into_bce_logits", "sigmoid applied before BCE-with-logits", "notes 002/003",
        {"TM202"}, {"TM202"}, _wrap_input("torch.sigmoid", {"bce_logits"})),
    _op("logits_into_nll", "cross-entropy replaced by NLLLoss on raw logits (PyTorch word-LM bug)",
        "DeepCrime change-loss-function; issue 10", {"TM202"}, {"TM202"}, find_logits_into_nll),
    _op("kl_div_on_probs", "kl_div given probabilities instead of log-probabilities", "note 003",
        {"TM202"}, {"TM202"}, find_kl_on_probs),
    _op("binary_labels_1_2", "binary training labels coded 1/2 instead of 0/1", "note 003; issue 10",
        {"TM203"}, {"TM203"}, _shift_target({"bce_logits", "bce"})),
    _op("labels_off_by_one", "class labels of the training loss shifted by one", "note 003",
        {"TM203"}, {"TM203"}, _shift_target({"ce", "nll"})),
    _op("nan_rows", "three training rows with a missing (NaN) field", "notes 002/003",
        {"TM101", "TM301", "TM302", "TM313", "TM210"}, {"TM101", "TM313"}, _data_fault("nan_rows", FEATURES, 0)),
    _op("sentinel_rows", "a -9999 sentinel in one column of 2% of the training rows", "note 003; issue 10",
        {"TM109", "TM108", "TM301", "TM302", "TM303", "TM305", "TM306"}, {"TM109", "TM108"},
        _data_fault("sentinel_rows", FEATURES, 0)),
    _op("unscaled_features", "feature standardization removed", "note 001; DeepCrime remove-normalisation",
        {"TM108", "TM301", "TM302", "TM303", "TM305", "TM306", "TM307", "TM311", "TM207"}, {"TM108"}, find_unscaled),
    _op("raw_skewed_target", "trained on the raw skewed target instead of log(y)", "note 001",
        {"TM112", "TM301", "TM302", "TM303", "TM305", "TM306", "TM307"}, {"TM112"}, find_raw_target),
    _op("counts_under_mse", "a sparse count target trained with MSE instead of a Poisson loss", "note 000",
        {"TM111"}, {"TM111"}, find_counts_mse),
    _op("normal_init", "every parameter re-initialised from N(0, 1)", "note 001; DeepCrime change-weights-init",
        {"TM205", "TM206", "TM207", "TM303", "TM305", "TM306", "TM307", "TM301", "TM302", "TM311", "TM317"}, {"TM205"},
        _init_all("normal_(_tm_p, 0.0, 1.0)")),
    # TM311 added after the baseline (issue 11, phase 2): a zero-initialised ReLU/tanh network gets exactly zero
    # gradient in every weight layer, which is now named a dead network (TM311) instead of vanishing (TM304).
    _op("zero_init", "every parameter initialised to zero", "DeepCrime change-weights-init",
        {"TM205", "TM304", "TM311", "TM312", "TM315"}, {"TM205"}, _init_all("zeros_(_tm_p)")),
    _op("sigmoid_activations", "every hidden activation replaced by sigmoid", "note 001; DeepCrime change-activation",
        {"TM206", "TM304", "TM315", "TM205"}, {"TM206", "TM304", "TM205"}, find_sigmoid),
    _op("deep_sigmoid", "a square hidden layer becomes a stack of 8 Linear+Sigmoid layers", "note 001",
        {"TM206", "TM304", "TM315", "TM205"}, {"TM206", "TM304", "TM205"}, find_deep_sigmoid),
    _op("relu_head", "a ReLU on the output of a regression model with a signed target", "issue 10",
        {"TM211", "TM207", "TM311"}, {"TM211"}, find_relu_head),
    _op("freeze_typo", "`p.requires_grad_ = ...` instead of `p.requires_grad = ...`: (un)freezing never happens",
        "issue 10", {"TM204"}, {"TM204"}, find_freeze_typo),
    _op("optimizer_wrong_model", "an optimizer built over another model's parameters", "issue 10",
        {"TM204"}, {"TM204"}, find_wrong_model),
    # TM116 built in round three (issue 11): the proposed code is now the cause
    _op("class_sorted", "training batches in label order, not shuffled", "notes 002/004",
        {"TM116", "TM307", "TM305", "TM306", "TM303"}, {"TM116"}, find_class_sorted),
    _op("shuffled_labels", "training labels randomly permuted", "DeepCrime change-labels; note 004",
        {"TM309", "TM308", "TM315", "TM317"}, None, _data_fault("permute", LABELS, 1),
        "TM117 unlearnable-labels (validation stays at the chance level while training only memorizes)"),
    _op("fp16_without_scaler", "float16 autocast without a GradScaler (or bf16 switched to fp16)",
        "note 002; issue 11", {"TM314", "TM301", "TM302", "TM312", "TM304"}, None, find_fp16_no_scaler,
        "TM213 fp16-without-scaler (float16 autocast and no GradScaler: small gradients underflow)"),
    _op("huge_weight_decay", "weight decay 1.0 (50 for AdamW)", "DeepCrime change-weights-regularisation",
        {"TM308", "TM315", "TM312", "TM317"}, None, find_weight_decay,
        "TM330 decay-dominates (the weight norm collapses while the loss stays high; TM318 is now dead-network)"),
    _op("tiny_batch_large_lr", "batches of 2 with a 10x learning rate (step-based loops)", "note 002",
        LR | LR_SYMPTOMS, LR, find_tiny_batch),
    _op("loss_reduction_sum", "the training loss summed over the batch instead of averaged", "DeepCrime change-loss",
        LR | LR_SYMPTOMS, LR, find_reduction_sum),
    _op("remove_epsilon", "the epsilon/clamp guarding a log, sqrt or a division by std removed", "notes 000/002",
        {"TM301", "TM302", "TM210"}, {"TM210"}, find_remove_epsilon),
    _op("positive_link_removed", "softplus/exp removed from a predicted rate whose log is taken",
        "notes 000/002", {"TM301", "TM302", "TM210", "TM211"}, {"TM210", "TM211"}, find_positive_link),
)

BY_NAME = {op.name: op for op in OPERATORS}


def build(text: str, site: Site) -> str:
    edits = list(site.edits)
    if site.helpers:
        at = Source(text).helpers_point()
        code = "".join(HELPERS[h] for h in site.helpers)
        edits.append(Edit(at, at, "\n" + code.lstrip("\n") + "\n"))
    out = apply_edits(text, edits)
    ast.parse(out)  # a mutant must stay a valid program
    return out


def mutants(program: str, text: str, operators: tuple[Operator, ...] = OPERATORS) -> list[Mutant]:
    src = Source(text)
    out = []
    for op in operators:
        for i, site in enumerate(op.find(src)[:MAX_SITES]):
            out.append(Mutant(program, op, i, site.where, build(text, site)))
    return out


def main() -> None:
    from programs import PROGRAMS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("programs", nargs="*")
    ap.add_argument("--show", metavar="PROGRAM:OPERATOR:INDEX")
    args = ap.parse_args()
    progs = [p for p in PROGRAMS if not args.programs or p.name in args.programs]
    if args.show:
        name = args.show.split(":")[0]
        prog = next(p for p in PROGRAMS if p.name == name)
        text = prog.path.read_text()
        for m in mutants(prog.name, text):
            if m.id == args.show:
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), m.source.splitlines(True),
                                                           prog.path.name, m.id))
        return
    total = 0
    for prog in progs:
        ms = mutants(prog.name, prog.path.read_text())
        total += len(ms)
        print(f"{prog.name} ({len(ms)} mutants)")
        for m in ms:
            print(f"  {m.operator.name}:{m.index:<3} {m.where}")
    print(f"{total} mutants, {len(OPERATORS)} operators")


if __name__ == "__main__":
    main()

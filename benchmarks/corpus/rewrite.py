"""Mechanical rewrites of a program for the entry points that need code changes.

Medic API (what a user does by hand, done by rule):
  * after each ``name = torch.optim.X(<params>)`` statement: ``trainmedic.Medic(model, name)``, where
    ``model`` is the module whose ``.parameters()`` the optimizer receives (several modules, e.g. parameter
    groups over a backbone and a head, are wrapped in one ``nn.ModuleList``);
  * ``opt.step()`` -> ``medic.step(loss)``, where ``loss`` is the tensor of the nearest ``.backward()``
    call before it in the same function (a backward on an expression is split: ``_tm_loss = expr;
    _tm_loss.backward()``); ``scaler.step(opt)`` -> ``medic.step(loss)`` with the scaler given to the Medic,
    ``scaler.update()`` removed (Medic updates the scaler);
  * after each assignment, inside a loop, to the program's validation variable (``Program.val_var``):
    ``medic.end_epoch(val_loss=<it>)`` for the Medic(s) that stepped since the last call; at the end of an
    epoch loop (``Program.epoch_var``) without such an assignment: ``medic.end_epoch()``.

The batch form (``medic_rewrite(..., batch=True)``, the corpus entry ``medic_batch``: what the README
recommends) also hands Medic the loss function and the batch, where the loss holds exactly one call of a
loss function ``f(A, y, ...)`` (``f`` a variable bound to a ``torch.nn`` loss module, or an
``F.*``/``torch.nn.functional.*`` loss) whose first argument contains the forward ``model(x)`` of the
watched module exactly once, directly or through ``out = ...model(x)...`` bound earlier in the same
function. The step becomes ``_tm_step(opt, loss, batch=(x, y), loss_fn=...)``, i.e.
``medic.step(loss, batch=(x, y))`` with the Medic's ``loss_fn`` the loss as a function of the model's
output and the target: ``f`` itself for ``f(model(x), y)`` / ``f(out, y)``, else the loss as written with the
forward and the target replaced (``lambda _tm_out, _tm_target: F.cross_entropy(torch.softmax(_tm_out,
dim=1), _tm_target)``; a reshape, a ``.float()``, a division by the accumulation steps), which is what a user
states as their ``loss_fn``. ``loss_fn`` is set at each step rather than in the constructor because ``f``
is often bound after the optimizer; Medic reads it only at steps, so this is the same. ``x`` and ``y`` must
be free of effects (names, attributes, subscripts, arithmetic, tensor methods and ``torch``/``F``
functions that draw no random numbers) and not rebound between the forward and the step, since they are
read again there. Any other loss (a sum of two loss calls, a hand-written likelihood, a loss on another
module's output) keeps the plain form. When the optimizer receives several modules' parameters (parameter
groups over a body and a head) and the loss calls a module built from all of them before the optimizer
(``model = nn.Sequential(body, head)``), that module is the Medic's model, as a user would write it. At
the end the harness closes every Medic (``medic.close()``: the end-of-training checks) and, when the
program raised, exits it as ``with Medic(...) as medic:`` around the training would.

What the rewriter needs, and where it gives up (the program then leaves this entry point out):
an optimizer built in an assignment statement (not returned from a function), with its parameters
reachable as ``X.parameters()`` in the constructor call or in the assignment of the list it receives; a
``.backward()`` in the same function before each step; the name of the validation variable.

Lightning: a ``MedicCallback`` added to the ``callbacks`` of the ``Trainer(...)`` call.

The Medic and callback objects are appended to lists the harness passes in as globals (``_TM_MEDICS``,
``_TM_CALLBACKS``), so it can read their findings after the program ends, also after a crash.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from astedit import Edit, Source, apply_edits, dotted  # noqa: E402


class NotRewritable(Exception):
    """The program does not have the shape the mechanical rewrite needs."""


MEDIC_HELPERS = '''
import trainmedic as _tm_trainmedic

_TM_MEDICS = globals().get("_TM_MEDICS", [])
_TM_BY_OPT = {}
_TM_STEPS_AT_EPOCH = {}


def _tm_attach(optimizer, model):
    medic = _tm_trainmedic.Medic(model, optimizer, console=False)
    _TM_MEDICS.append(medic)
    _TM_BY_OPT[id(optimizer)] = medic


def _tm_step(optimizer, loss, scaler=None):
    medic = _TM_BY_OPT[id(optimizer)]
    if scaler is not None:
        medic.scaler = scaler
    return medic.step(loss)


def _tm_end_epoch(val_loss=None):
    for medic in _TM_MEDICS:
        if medic.step_count > _TM_STEPS_AT_EPOCH.get(id(medic), 0):
            _TM_STEPS_AT_EPOCH[id(medic)] = medic.step_count
            medic.end_epoch(val_loss=val_loss)
'''

#: the batch form's step (the rest of MEDIC_HELPERS unchanged, so the plain form's text stays as it was)
MEDIC_BATCH_HELPERS = MEDIC_HELPERS.replace('''def _tm_step(optimizer, loss, scaler=None):
    medic = _TM_BY_OPT[id(optimizer)]
    if scaler is not None:
        medic.scaler = scaler
    return medic.step(loss)
''', '''def _tm_step(optimizer, loss, scaler=None, batch=None, loss_fn=None):
    medic = _TM_BY_OPT[id(optimizer)]
    if scaler is not None:
        medic.scaler = scaler
    if loss_fn is not None:
        medic.loss_fn = loss_fn  # read at steps only: the same as Medic(..., loss_fn=loss_fn)
    return medic.step(loss, batch=batch)
''')
assert MEDIC_BATCH_HELPERS != MEDIC_HELPERS

LIGHTNING_HELPERS = '''
from trainmedic.integrations.lightning import MedicCallback as _TMMedicCallback

_TM_CALLBACKS = globals().get("_TM_CALLBACKS", [])


def _tm_callback():
    cb = _TMMedicCallback(console=False)
    _TM_CALLBACKS.append(cb)
    return cb
'''


def _helpers_edit(src: Source, code: str) -> Edit:
    at = src.helpers_point()
    return Edit(at, at, "\n" + code.lstrip("\n") + "\n")


def _model_expr(src: Source, call: ast.Call) -> str:
    receivers = src.parameter_receivers(call)
    if not receivers and call.args and isinstance(call.args[0], ast.Name):
        for a in src.assignments_to(call.args[0].id):
            if src.function_of(a) is src.function_of(call) and a.lineno < call.lineno:
                receivers = src.parameter_receivers(a.value)
    if not receivers:
        raise NotRewritable(f"line {call.lineno}: cannot tell which module the optimizer trains")
    names = [src.seg(r) for r in receivers]
    return names[0] if len(names) == 1 else f"torch.nn.ModuleList([{', '.join(names)}])"


def _backward_before(src: Source, step: ast.stmt) -> ast.Call:
    fn = src.function_of(step)
    backs = [c for c in src.method_calls("backward") if src.function_of(c) is fn and c.lineno <= step.lineno]
    if not backs:
        raise NotRewritable(f"line {step.lineno}: no .backward() before the optimizer step")
    return backs[-1]


def _loss_before(src: Source, step: ast.stmt, edits: list[Edit], hoisted: dict[int, str]) -> str:
    back = _backward_before(src, step)
    recv = back.func.value
    if isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute) and recv.func.attr == "scale" and recv.args:
        recv = recv.args[0]  # scaler.scale(loss).backward()
    if isinstance(recv, (ast.Name, ast.Attribute)):
        return src.seg(recv)
    key = id(back)
    if key not in hoisted:
        stmt = src.statement_of(back)
        if not isinstance(stmt, ast.Expr) or stmt.value is not back:
            raise NotRewritable(f"line {back.lineno}: backward() inside a larger statement")
        name = f"_tm_loss{len(hoisted)}"
        hoisted[key] = name
        edits.append(src.replace(stmt, f"{name} = {src.seg(recv)}; {name}.backward({', '.join(src.seg(a) for a in back.args)})"))
    return hoisted[key]


# -- the batch form -----------------------------------------------------------------------------------
#: tensor methods and functions that read their input and nothing else (a target may be read through them)
_PURE_METHODS = {"float", "long", "double", "half", "int", "bool", "unsqueeze", "squeeze", "view", "reshape", "to",
                 "flatten", "t", "clone", "detach", "contiguous", "type", "view_as", "reshape_as", "expand_as"}
_IMPURE = ("rand", "dropout", "normal", "bernoulli", "multinomial", "poisson", "shuffle", "perm")


def _pure(src: Source, node: ast.expr) -> bool:
    """``node`` may be evaluated again at the step without effect: names, attributes, subscripts, constants,
    arithmetic, and calls of tensor methods/``torch``/``F`` functions that draw no random numbers."""
    for n in ast.walk(node):
        if isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.Starred,
                          ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp)):
            return False
        if isinstance(n, ast.Call):
            name = dotted(n.func)
            if any(w in name.lower() for w in _IMPURE):
                return False
            method = isinstance(n.func, ast.Attribute) and n.func.attr in _PURE_METHODS
            if not (method or name.startswith(("torch.", "F.", "nnf."))):
                return False
    return True


def _last_assign(src: Source, name: str, fn: ast.AST | None, before_line: int) -> ast.Assign | None:
    """The last ``name = ...`` (a single plain target) in ``fn`` before ``before_line``."""
    out = None
    for a in src.assignments_to(name):
        if src.function_of(a) is fn and a.lineno < before_line and len(a.targets) == 1 \
                and isinstance(a.targets[0], ast.Name) and a.targets[0].id == name:
            out = a
    return out


def _forwards(node: ast.AST) -> list[ast.Call]:
    """Calls ``m(x)`` in ``node``: one positional argument, no keywords, ``m`` a name or an attribute."""
    return [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))
            and len(n.args) == 1 and not n.keywords and not isinstance(n.args[0], ast.Starred)]


def _text_with(src: Source, node: ast.AST, subs: list[tuple[ast.AST, str]]) -> str:
    """The source of ``node`` with the given sub-nodes replaced by texts."""
    a, _ = src.span(node)
    return apply_edits(src.seg(node), [Edit(*(x - a for x in src.span(n)), t) for n, t in subs])


def loss_batch(src: Source, loss_expr: ast.expr, at: ast.stmt, is_model) -> tuple[str, str, str, str] | None:
    """``(loss_fn, model, x, y)`` texts for the step ``at`` whose loss is ``loss_expr``, or None.

    The loss holds exactly one call of a loss function ``f(A, y, ...)`` whose first argument contains the
    forward ``m(x)`` of the watched model (``is_model(m)``) exactly once, directly or through a variable
    ``out = ...m(x)...`` bound earlier in the same function. ``loss_fn`` is then the loss as a function of the
    model output and the target: ``f`` itself when the loss is ``f(m(x), y)`` (or ``f(out, y)``), else
    ``lambda _tm_out, _tm_target: <the loss, with m(x) and y replaced>`` (a softmax before the loss, a
    reshape, a loss divided by the accumulation steps: what a user states as their loss function)."""
    fn = src.function_of(at)
    calls = [c for c in ast.walk(loss_expr) if isinstance(c, ast.Call) and src.loss_kind(c) is not None]
    if len(calls) != 1 or len(calls[0].args) < 2 or any(isinstance(a, ast.Starred) for a in calls[0].args):
        return None
    call = calls[0]
    first, target = call.args[0], call.args[1]
    outs = [n for n in ast.walk(loss_expr) if isinstance(n, ast.Name)]
    bound = None  # (the Name in the loss, the assignment out = ...)
    fwd = [c for c in _forwards(loss_expr) if is_model(src.seg(c.func))]
    if not fwd:
        for n in ast.walk(first):
            if isinstance(n, ast.Name):
                a = _last_assign(src, n.id, fn, src.statement_of(loss_expr).lineno)
                if a is not None and [c for c in _forwards(a.value) if is_model(src.seg(c.func))]:
                    if bound is not None:
                        return None
                    bound = (n, a)
        if bound is None or sum(o.id == bound[0].id for o in outs) != 1:
            return None
        fwd = [c for c in _forwards(bound[1].value) if is_model(src.seg(c.func))]
    if len(fwd) != 1 or any(c is not fwd[0] and is_model(src.seg(c.func)) for c in _forwards(loss_expr)):
        return None
    forward = fwd[0]
    x = forward.args[0]
    if not _pure(src, x) or not _pure(src, target):
        return None
    # what is read again at the step must not be rebound between the forward and the step
    read = [x, target, loss_expr] + ([bound[1].value] if bound else [])
    names = {n.id for part in read for n in ast.walk(part) if isinstance(n, ast.Name)}
    if bound:
        names.discard(bound[0].id)
    line0 = src.statement_of(forward).lineno
    for n in ast.walk(fn if fn is not None else src.tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.id in names \
                and line0 < n.lineno <= at.lineno and src.function_of(n) is fn:
            return None
    plain_first = bound[0] if bound else forward
    if loss_expr is call and first is plain_first and len(call.args) == 2 and not call.keywords:
        loss_fn = src.seg(call.func)
    else:
        if bound:
            out_text = "(" + _text_with(src, bound[1].value, [(forward, "_tm_out")]) + ")"
            subs = [(bound[0], out_text)]
        else:
            subs = [(forward, "_tm_out")]
        body = _text_with(src, loss_expr, [*subs, (target, "_tm_target")])
        loss_fn = f"lambda _tm_out, _tm_target: {body}"
    return loss_fn, src.seg(forward.func), src.seg(x), src.seg(target)


def _loss_expr(src: Source, step: ast.stmt) -> ast.expr | None:
    """The expression whose ``.backward()`` precedes ``step``: the backward's receiver, or the value last
    assigned to the variable it is called on."""
    back = _backward_before(src, step)
    recv = back.func.value
    if isinstance(recv, ast.Call) and isinstance(recv.func, ast.Attribute) and recv.func.attr == "scale" and recv.args:
        recv = recv.args[0]
    if isinstance(recv, ast.Name):
        a = _last_assign(src, recv.id, src.function_of(back), back.lineno)
        return a.value if a is not None else None
    return recv if isinstance(recv, ast.Call) else None


def _whole_model(src: Source, callee: str, receivers: list[str], opt_stmt: ast.stmt) -> bool:
    """``callee`` is a variable bound, before the optimizer in the same function, to a module built from
    every module the optimizer trains (``model = nn.Sequential(body, head)``)."""
    if not callee.isidentifier():
        return False
    a = _last_assign(src, callee, src.function_of(opt_stmt), opt_stmt.lineno)
    if a is None:
        return False
    inside = {src.seg(n) for n in ast.walk(a.value) if isinstance(n, (ast.Name, ast.Attribute))}
    return all(r in inside for r in receivers)


def _alias_of(src: Source, callee: str, model: str, opt_stmt: ast.stmt) -> bool:
    """``callee`` was bound to ``model`` in the optimizer's function before it (``self.model = model``)."""
    fn = src.function_of(opt_stmt)
    for node in ast.walk(fn if fn is not None else src.tree):
        if isinstance(node, ast.Assign) and node.lineno < opt_stmt.lineno and src.function_of(node) is fn \
                and len(node.targets) == 1 and src.seg(node.targets[0]) == callee and src.seg(node.value) == model:
            return True
    return False


def medic_rewrite(text: str, val_var: str | None, epoch_var: str | None, batch: bool = False) -> str:
    """The Medic-API form of ``text`` (module docstring); ``batch``: with ``loss_fn`` and ``batch=`` where
    the loss has the form for it."""
    src = Source(text)
    edits: list[Edit] = [_helpers_edit(src, MEDIC_BATCH_HELPERS if batch else MEDIC_HELPERS)]
    targets: dict[str, tuple[ast.stmt, ast.Call]] = {}
    for call in src.optimizer_calls():
        stmt = src.statement_of(call)
        target = src.optimizer_target(call)
        if target is None or not isinstance(stmt, ast.Assign):
            raise NotRewritable(f"line {call.lineno}: the optimizer is not assigned to a variable")
        targets[target] = (stmt, call)
    if not targets:
        raise NotRewritable("no torch.optim optimizer is constructed in the program")
    models = {t: _model_expr(src, call) for t, (_, call) in targets.items()}
    hoisted: dict[int, str] = {}
    scalers: set[str] = set()
    steps: list[tuple[ast.stmt, str, str, str | None]] = []  # (statement, optimizer, loss, scaler)
    for c in src.method_calls("step"):
        stmt = src.parent.get(c)
        if not isinstance(stmt, ast.Expr):
            continue
        recv = src.seg(c.func.value)
        if recv in targets and not c.args:
            steps.append((stmt, recv, _loss_before(src, stmt, edits, hoisted), None))
        elif len(c.args) == 1 and src.seg(c.args[0]) in targets:  # scaler.step(opt)
            scalers.add(recv)
            steps.append((stmt, src.seg(c.args[0]), _loss_before(src, stmt, edits, hoisted), recv))
    if not steps:
        raise NotRewritable("no optimizer.step() call on a constructed optimizer")
    for stmt, opt, loss, scaler in steps:
        extra = [scaler] if scaler else []
        expr = _loss_expr(src, stmt) if batch else None
        opt_stmt, opt_call = targets[opt]
        receivers = [src.seg(r) for r in src.parameter_receivers(opt_call)]

        def is_model(callee: str, opt: str = opt, opt_stmt: ast.stmt = opt_stmt, receivers: list[str] = receivers) -> bool:
            return callee == models[opt] or _alias_of(src, callee, models[opt], opt_stmt) \
                or (len(receivers) > 1 and _whole_model(src, callee, receivers, opt_stmt))

        found = loss_batch(src, expr, stmt, is_model) if expr is not None else None
        if found is not None:
            loss_fn, callee, x, y = found
            if callee != models[opt] and not _alias_of(src, callee, models[opt], opt_stmt):
                models[opt] = callee  # the module built from every trained module: the user's model
            extra += [f"batch=({x}, {y})", f"loss_fn={loss_fn}"]
        edits.append(src.replace(stmt, f"_tm_step({', '.join([opt, loss, *extra])})"))
    for t, (stmt, _) in targets.items():
        edits.append(src.insert_after(stmt, f"_tm_attach({t}, {models[t]})"))
    for c in src.method_calls("update"):
        stmt = src.parent.get(c)
        if isinstance(stmt, ast.Expr) and src.seg(c.func.value) in scalers and not c.args:
            edits.append(src.delete_stmt(stmt))
    with_val: set[ast.AST] = set()
    if val_var:
        for a in src.assignments_to(val_var):
            loops = src.loops_of(a)
            if loops:
                edits.append(src.insert_after(a, f"_tm_end_epoch({val_var})"))
                with_val.update(loops)
    if epoch_var:
        for node in ast.walk(src.tree):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == epoch_var \
                    and node not in with_val:
                edits.append(src.insert_after(node.body[-1], "_tm_end_epoch(None)"))
    out = apply_edits(text, edits)
    ast.parse(out)
    return out


def lightning_rewrite(text: str) -> str:
    src = Source(text)
    trainers = [c for c in src.calls() if dotted(c.func).split(".")[-1] == "Trainer"]
    if not trainers:
        raise NotRewritable("no Trainer(...) call")
    edits = [_helpers_edit(src, LIGHTNING_HELPERS)]
    for t in trainers:
        cbs = next((k for k in t.keywords if k.arg == "callbacks"), None)
        if cbs is None:
            _, end = src.span(t)
            edits.append(Edit(end - 1, end - 1, ", callbacks=[_tm_callback()]"))
        elif isinstance(cbs.value, ast.List):
            a, b = src.span(cbs.value)
            edits.append(Edit(b - 1, b - 1, ", _tm_callback()" if cbs.value.elts else "_tm_callback()"))
        else:
            edits += src.wrap(cbs.value, "list(", ") + [_tm_callback()]")
    out = apply_edits(text, edits)
    ast.parse(out)
    return out

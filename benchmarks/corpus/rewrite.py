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


def _loss_before(src: Source, step: ast.stmt, edits: list[Edit], hoisted: dict[int, str]) -> str:
    fn = src.function_of(step)
    backs = [c for c in src.method_calls("backward") if src.function_of(c) is fn and c.lineno <= step.lineno]
    if not backs:
        raise NotRewritable(f"line {step.lineno}: no .backward() before the optimizer step")
    back = backs[-1]
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


def medic_rewrite(text: str, val_var: str | None, epoch_var: str | None) -> str:
    src = Source(text)
    edits: list[Edit] = [_helpers_edit(src, MEDIC_HELPERS)]
    targets = []
    for call in src.optimizer_calls():
        stmt = src.statement_of(call)
        target = src.optimizer_target(call)
        if target is None or not isinstance(stmt, ast.Assign):
            raise NotRewritable(f"line {call.lineno}: the optimizer is not assigned to a variable")
        edits.append(src.insert_after(stmt, f"_tm_attach({target}, {_model_expr(src, call)})"))
        targets.append(target)
    if not targets:
        raise NotRewritable("no torch.optim optimizer is constructed in the program")
    hoisted: dict[int, str] = {}
    scalers: set[str] = set()
    n_steps = 0
    for c in src.method_calls("step"):
        stmt = src.parent.get(c)
        if not isinstance(stmt, ast.Expr):
            continue
        recv = src.seg(c.func.value)
        if recv in targets and not c.args:
            edits.append(src.replace(stmt, f"_tm_step({recv}, {_loss_before(src, stmt, edits, hoisted)})"))
            n_steps += 1
        elif len(c.args) == 1 and src.seg(c.args[0]) in targets:  # scaler.step(opt)
            scalers.add(recv)
            loss = _loss_before(src, stmt, edits, hoisted)
            edits.append(src.replace(stmt, f"_tm_step({src.seg(c.args[0])}, {loss}, {recv})"))
            n_steps += 1
    if n_steps == 0:
        raise NotRewritable("no optimizer.step() call on a constructed optimizer")
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

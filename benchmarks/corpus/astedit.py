"""Precise source edits located with the ``ast`` module: the rest of a program keeps its text.

A :class:`Source` parses a program once and answers the questions the mutation operators and the
rewriters ask (where is this node, which statement holds it, is it evaluation code, which loops enclose
it); :class:`Edit` objects replace character ranges and :func:`apply_edits` applies a list of them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

OPTIMIZERS = {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD"}
SCHEDULERS = {"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
              "OneCycleLR", "CyclicLR", "LambdaLR", "LinearLR", "ReduceLROnPlateau", "PolynomialLR"}
#: loss kinds by ``torch.nn.functional`` name and by ``torch.nn`` class name
F_LOSSES = {"cross_entropy": "ce", "nll_loss": "nll", "binary_cross_entropy_with_logits": "bce_logits",
            "binary_cross_entropy": "bce", "mse_loss": "mse", "l1_loss": "l1", "smooth_l1_loss": "l1",
            "huber_loss": "l1", "kl_div": "kl", "poisson_nll_loss": "poisson"}
NN_LOSSES = {"CrossEntropyLoss": "ce", "NLLLoss": "nll", "BCEWithLogitsLoss": "bce_logits", "BCELoss": "bce",
             "MSELoss": "mse", "L1Loss": "l1", "SmoothL1Loss": "l1", "HuberLoss": "l1", "KLDivLoss": "kl",
             "PoissonNLLLoss": "poisson"}
#: functions whose body is evaluation code (no training step happens there)
EVAL_FUNCTION = re.compile(r"^(validation_step|test_step|predict_step|eval\w*|validat\w*|estimate\w*|"
                           r"error_rate|accuracy|score\w*|sliced_\w+|poisson_deviance)$")


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def apply_edits(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits (insertions at the same point keep their list order)."""
    order = sorted(range(len(edits)), key=lambda i: (edits[i].start, edits[i].end, i))
    out, pos = [], 0
    for i in order:
        e = edits[i]
        if e.start < pos:
            raise ValueError(f"overlapping edits at offset {e.start}")
        out.append(text[pos:e.start])
        out.append(e.text)
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def dotted(node: ast.AST) -> str:
    """``torch.optim.SGD`` for an Attribute chain, the name for a Name, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


class Source:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tree = ast.parse(text)
        self._line_start = [0]
        for line in text.splitlines(keepends=True):
            self._line_start.append(self._line_start[-1] + len(line))
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
        self.loss_vars = self._loss_variables()

    # -- positions ------------------------------------------------------------------------------------
    def _line(self, lineno: int) -> str:
        start = self._line_start[lineno - 1]
        end = self._line_start[lineno] if lineno < len(self._line_start) else len(self.text)
        return self.text[start:end]

    def offset(self, lineno: int, col: int) -> int:
        # col_offset counts UTF-8 bytes
        return self._line_start[lineno - 1] + len(self._line(lineno).encode("utf-8")[:col].decode("utf-8", "ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset))

    def seg(self, node: ast.AST) -> str:
        a, b = self.span(node)
        return self.text[a:b]

    def receiver(self, call: ast.Call) -> str:
        """The text before ``.method`` in ``receiver.method(...)``, parentheses included."""
        a, b = self.span(call.func)
        return self.text[a:b - len(call.func.attr)].rstrip().removesuffix(".").rstrip()

    def replace(self, node: ast.AST, text: str) -> Edit:
        a, b = self.span(node)
        return Edit(a, b, text)

    def wrap(self, node: ast.AST, before: str, after: str) -> list[Edit]:
        a, b = self.span(node)
        return [Edit(a, a, before), Edit(b, b, after)]

    def indent_of(self, stmt: ast.stmt) -> str:
        line = self._line(stmt.lineno)
        return line[: len(line) - len(line.lstrip())]

    def insert_after(self, stmt: ast.stmt, code: str) -> Edit:
        """Insert ``code`` (one or more lines, unindented) as statements right after ``stmt``."""
        end = self._line_start[stmt.end_lineno] if stmt.end_lineno < len(self._line_start) else len(self.text)
        ind = self.indent_of(stmt)
        body = "".join(ind + line + "\n" for line in code.splitlines())
        prefix = "" if self.text[:end].endswith("\n") else "\n"
        return Edit(end, end, prefix + body)

    def insert_before(self, stmt: ast.stmt, code: str) -> Edit:
        start = self._line_start[stmt.lineno - 1]
        ind = self.indent_of(stmt)
        return Edit(start, start, "".join(ind + line + "\n" for line in code.splitlines()))

    def insert_in_body_start(self, compound: ast.stmt, code: str) -> Edit:
        return self.insert_before(compound.body[0], code)

    def delete_stmt(self, stmt: ast.stmt) -> Edit:
        """Replace a simple statement by ``pass`` (keeps the block valid and the line numbers)."""
        return self.replace(stmt, "pass")

    def helpers_point(self) -> int:
        """Where helper definitions go: after the last top-level import."""
        last = None
        for node in self.tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                last = node
        if last is None:
            return 0
        return self._line_start[last.end_lineno] if last.end_lineno < len(self._line_start) else len(self.text)

    # -- structure ------------------------------------------------------------------------------------
    def ancestors(self, node: ast.AST):
        while node in self.parent:
            node = self.parent[node]
            yield node

    def statement_of(self, node: ast.AST) -> ast.stmt:
        while not isinstance(node, ast.stmt):
            node = self.parent[node]
        return node

    def function_of(self, node: ast.AST) -> ast.FunctionDef | None:
        for a in self.ancestors(node):
            if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return a
        return None

    def loops_of(self, node: ast.AST) -> list[ast.stmt]:
        """Enclosing for/while loops inside the same function, innermost first."""
        out = []
        for a in self.ancestors(node):
            if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                break
            if isinstance(a, (ast.For, ast.While)):
                out.append(a)
        return out

    def in_eval(self, node: ast.AST) -> bool:
        """Evaluation code: under ``torch.no_grad()``/``inference_mode()``, or in an evaluation function."""
        for a in self.ancestors(node):
            if isinstance(a, ast.With):
                for item in a.items:
                    name = dotted(item.context_expr.func) if isinstance(item.context_expr, ast.Call) else ""
                    if name.endswith(("no_grad", "inference_mode")):
                        return True
            if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if EVAL_FUNCTION.match(a.name):
                    return True
                for dec in a.decorator_list:
                    d = dotted(dec.func) if isinstance(dec, ast.Call) else dotted(dec)
                    if d.endswith(("no_grad", "inference_mode")):
                        return True
        return False

    def is_top_level_statement(self, stmt: ast.stmt) -> bool:
        """A statement directly in a module or function body (not in a loop, if, with or try)."""
        par = self.parent.get(stmt)
        return isinstance(par, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)) and stmt in par.body

    # -- queries --------------------------------------------------------------------------------------
    def calls(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                yield node

    def optimizer_calls(self) -> list[ast.Call]:
        out = []
        for c in self.calls():
            name = dotted(c.func)
            parts = name.split(".")
            if parts[-1] in OPTIMIZERS and ("optim" in parts[:-1] or len(parts) == 1):
                out.append(c)
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def scheduler_calls(self) -> list[ast.Call]:
        out = [c for c in self.calls() if dotted(c.func).split(".")[-1] in SCHEDULERS]
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def optimizer_target(self, call: ast.Call) -> str | None:
        """The text of the variable an optimizer is assigned to (``opt``, ``self.optimizer``)."""
        par = self.parent.get(call)
        if isinstance(par, ast.Assign) and len(par.targets) == 1 and isinstance(par.targets[0], (ast.Name, ast.Attribute)):
            return self.seg(par.targets[0])
        return None

    def parameter_receivers(self, node: ast.AST) -> list[ast.expr]:
        """``X`` of every ``X.parameters()`` inside ``node``, in source order, without duplicates."""
        seen, out = set(), []
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "parameters":
                t = self.seg(n.func.value)
                if t not in seen:
                    seen.add(t)
                    out.append(n.func.value)
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def method_calls(self, attr: str, receiver: str | None = None, nargs: int | None = None) -> list[ast.Call]:
        out = []
        for c in self.calls():
            if isinstance(c.func, ast.Attribute) and c.func.attr == attr:
                if receiver is not None and self.seg(c.func.value) != receiver:
                    continue
                if nargs is not None and len(c.args) != nargs:
                    continue
                out.append(c)
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def _loss_variables(self) -> dict[str, str]:
        """Variables bound to an ``nn`` loss module: ``{"self.criterion": "ce", "bce": "bce_logits"}``."""
        out = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                kind = NN_LOSSES.get(dotted(node.value.func).split(".")[-1])
                if kind:
                    for t in node.targets:
                        if isinstance(t, (ast.Name, ast.Attribute)):
                            out[self.seg(t)] = kind
        return out

    def loss_kind(self, call: ast.Call) -> str | None:
        name = dotted(call.func)
        if name:
            last = name.split(".")[-1]
            if last in F_LOSSES and ("functional" in name or name.startswith(("F.", "nnf."))):
                return F_LOSSES[last]
        if isinstance(call.func, (ast.Name, ast.Attribute)):
            return self.loss_vars.get(self.seg(call.func))
        return None

    def loss_calls(self, kinds: set[str] | None = None, training: bool | None = None) -> list[ast.Call]:
        out = []
        for c in self.calls():
            k = self.loss_kind(c)
            if k is None or (kinds is not None and k not in kinds):
                continue
            if training is not None and self.in_eval(c) == training:
                continue
            out.append(c)
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def assignments_to(self, name: str) -> list[ast.Assign]:
        out = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    names = [e for e in ast.walk(t) if isinstance(e, ast.Name) and isinstance(e.ctx, ast.Store)]
                    if any(e.id == name for e in names):
                        out.append(node)
                        break
        return sorted(out, key=lambda n: (n.lineno, n.col_offset))

    def assigned_names(self) -> set[str]:
        out = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
        return out

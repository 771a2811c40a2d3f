"""The shape of the code, checked: one direction of flow, no object reaching into another's internals.

These guard the redesign of issue 9: a rule is its detector + docs + test, a heal action lives in
``heal/``, a front end is one adapter over the step protocol. The checks read the source (AST), so they
cannot drift from it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "trainmedic"

#: Private attributes of third-party objects with no public equivalent, and why they are read.
THIRD_PARTY = {
    "_orig_mod": "torch.compile's OptimizedModule exposes the compiled module only as _orig_mod",
    "_input_metadata": "an autograd node's output shapes (observe/graph.py); no public accessor exists",
}
#: The deciding half of the flow: plain data in, plain data out, no torch.
TORCH_FREE = ["engine.py", "verdict.py", "heal/policy.py", "signals/monitor.py", "signals/step.py",
              "rules/detectors.py", "rules/runtime.py", "rules/registry.py", "config.py"]
MAX_CLASS_LINES = 350


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound to modules by the file's imports (``torch``, ``nn``, ``F``, ``argparse``...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                try:
                    spec = importlib.util.find_spec(f"{node.module}.{a.name}")
                except (ImportError, ValueError):
                    spec = None
                if spec is not None:
                    names.add(a.asname or a.name)
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def private_accesses(path: Path, root: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = _module_names(tree)
    hits = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = _root(node.value)
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            is_module = isinstance(base, ast.Name) and base.id in modules and isinstance(node.value, (ast.Name, ast.Attribute))
            if not own and not is_module:
                name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and node.args[1].value.startswith("_") and not node.args[1].value.startswith("__"):
            name = node.args[1].value
        if name is not None and name not in THIRD_PARTY:
            hits.append((node.lineno, f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}"))
    return [h for _, h in sorted(hits)]


def test_no_object_reads_or_writes_another_objects_underscore_attributes():
    hits = [h for p in sorted(SRC.rglob("*.py")) for h in private_accesses(p)]
    assert hits == []


def test_the_checker_catches_what_it_is_meant_to(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef f(medic):\n    medic._snapshots.clear()\n    return getattr(medic, '_x'), "
                   "torch._foreach_norm\n")
    hits = private_accesses(bad, root=tmp_path)
    assert len(hits) == 2 and "medic._snapshots" in hits[0] and "getattr(medic, '_x')" in hits[1]


def test_no_class_is_longer_than_the_limit():
    long = []
    for p in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long.append(f"{p.relative_to(SRC)}: {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


@pytest.mark.parametrize("rel", TORCH_FREE)
def test_the_deciding_half_does_not_import_torch(rel):
    tree = ast.parse((SRC / rel).read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in imported


def test_every_runtime_rule_has_a_registered_detector_or_says_who_raises_it():
    from trainmedic.rules.detectors import DETECTORS, Cadence, detectors_for
    from trainmedic.rules.registry import all_rules

    detectors_for(Cadence.STEP)  # loads the rule modules
    covered = {c for d in DETECTORS for c in d.codes}
    runtime = {r.code for r in all_rules() if r.family == "runtime"}
    # TM313 is raised by forensics (on trigger), TM316 by the heal policy's budgets, TM32x by checkpoints,
    # TM343 by heal's rate audit (copies trained at the first evaluation: heal/rate_audit.py).
    assert runtime - covered <= {"TM313", "TM316", "TM320", "TM321", "TM322", "TM323", "TM343"}

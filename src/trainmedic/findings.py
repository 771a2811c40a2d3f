"""Findings: what trainmedic reports, in the ``findings.json`` format every front end shares.

One finding per distinct problem: a repeated occurrence is counted in the evidence, not repeated, and
findings keep the order of their first occurrence.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainmedic.rules.registry import get_rule

FINDINGS_VERSION = 1


@dataclass
class Finding:
    code: str
    message: str
    step: int | None = None
    epoch: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    action: str | None = None
    severity: str | None = None  # defaults to the rule's severity
    name: str | None = None

    def __post_init__(self) -> None:
        r = get_rule(self.code)
        self.name = self.name or r.name
        self.severity = self.severity or r.severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity,
            "step": self.step,
            "epoch": self.epoch,
            "message": self.message,
            "evidence": jsonable(self.evidence),
            "action": self.action,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            code=d["code"],
            message=d.get("message", ""),
            step=d.get("step"),
            epoch=d.get("epoch"),
            evidence=dict(d.get("evidence") or {}),
            action=d.get("action"),
            severity=d.get("severity"),
            name=d.get("name"),
        )

    def __str__(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        if self.epoch is not None:
            where += f" (epoch {self.epoch})"
        return f"{self.code} {self.name} [{self.severity}]{where}: {self.message}"


class FindingLog:
    """Keeps one finding per key (by default per code), counting repeats in ``evidence['count']``."""

    def __init__(self) -> None:
        self._by_key: dict[str, Finding] = {}

    def add(self, finding: Finding, key: str | None = None) -> tuple[Finding, bool]:
        """Record a finding; returns (the stored finding, whether it is new)."""
        key = key or finding.code
        old = self._by_key.get(key)
        if old is None:
            finding.evidence.setdefault("count", 1)
            self._by_key[key] = finding
            return finding, True
        old.evidence["count"] = int(old.evidence.get("count", 1)) + 1
        old.evidence["last_step"] = finding.step
        if finding.action and not old.action:
            old.action = finding.action
        return old, False

    def get(self, key: str) -> Finding | None:
        return self._by_key.get(key)

    def __iter__(self):
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def as_list(self) -> list[Finding]:
        return list(self._by_key.values())

    def state_dict(self) -> list[dict[str, Any]]:
        return [dict(f.to_dict(), _key=k) for k, f in self._by_key.items()]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self._by_key = {d.get("_key", d["code"]): Finding.from_dict(d) for d in state}


def jsonable(obj: Any) -> Any:
    """Make evidence JSON-safe: tuples to lists, numpy/torch scalars to floats, NaN/Inf to strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        try:
            obj = obj.item()
        except (ValueError, RuntimeError):
            return str(obj)
        return jsonable(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    return str(obj)


def findings_document(findings: Iterable[Finding]) -> dict[str, Any]:
    return {"version": FINDINGS_VERSION, "findings": [f.to_dict() for f in findings]}


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a file so that readers see either the old or the complete new content, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_findings(path: str | os.PathLike[str], findings: Iterable[Finding]) -> None:
    atomic_write_text(path, json.dumps(findings_document(findings), indent=2, allow_nan=False) + "\n")


def read_findings(path: str | os.PathLike[str]) -> list[Finding]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    return [Finding.from_dict(d) for d in doc.get("findings", [])]

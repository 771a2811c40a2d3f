"""The one registry of rule codes.

Every problem trainmedic can name has exactly one :class:`Rule` here: its stable code, a short
kebab-case name, a severity, and the documentation that ``trainmedic explain CODE`` prints. The
documentation lives beside the rule's detector (in ``rules/data.py``, ``rules/wiring.py``,
``rules/runtime.py``, ``rules/internal.py``) in the manner of Ruff's rule docs: what it means, why it
happens, how to fix it, an example. Codes are never reused for another meaning.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: str
    summary: str
    what: str
    why: str
    fix: str
    example: str = ""
    references: tuple[str, ...] = field(default_factory=tuple)
    family: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.code}: severity must be one of {SEVERITIES}, not {self.severity!r}")

    def render(self, seen: str | None = None) -> str:
        """The text ``trainmedic explain`` prints; ``seen`` adds what this run observed."""

        def block(title: str, body: str) -> str:
            body = textwrap.dedent(body).strip("\n")
            return f"{title}\n" + textwrap.indent(body, "  ") + "\n"

        parts = [f"{self.code} {self.name} ({self.severity})\n", f"  {self.summary}\n"]
        parts.append(block("What it means", self.what))
        parts.append(block("Why it happens", self.why))
        parts.append(block("How to fix it", self.fix))
        if self.example:
            parts.append(block("Example", self.example))
        if self.references:
            parts.append(block("References", "\n".join(self.references)))
        if seen:
            parts.append(block("Seen in this run", seen))
        return "\n".join(parts)


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.code in RULES:
        raise ValueError(f"rule code {rule.code} registered twice")
    RULES[rule.code] = rule
    return rule


def rule(code: str, name: str, severity: str, **docs: object) -> Rule:
    """Declare and register a rule; returns it so detectors can refer to ``RULE.code``."""
    family = {"1": "data", "2": "wiring", "3": "runtime", "9": "internal"}.get(code[2], "")
    return register(Rule(code=code, name=name, severity=severity, family=family, **docs))  # type: ignore[arg-type]


def get_rule(code_or_name: str) -> Rule:
    """Look a rule up by code (``TM306``, ``tm306``) or by name (``loss-spike``)."""
    _load_all()
    key = code_or_name.strip()
    if key.upper() in RULES:
        return RULES[key.upper()]
    for r in RULES.values():
        if r.name == key.lower():
            return r
    raise KeyError(code_or_name)


def all_rules() -> list[Rule]:
    _load_all()
    return [RULES[c] for c in sorted(RULES)]


def _load_all() -> None:
    # Importing the family modules registers their rules.
    from trainmedic.rules import checkpoints, data, forensics, internal, runtime, wiring  # noqa: F401

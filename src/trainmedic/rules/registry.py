"""The one registry of rule codes.

Every problem trainmedic can name has exactly one :class:`Rule` here: its stable code, a short
kebab-case name, a severity, and the documentation that ``trainmedic explain CODE`` prints. The
documentation lives beside the rule's detector (in ``rules/data.py``, ``rules/wiring.py``,
``rules/runtime.py``, ``rules/learning.py``, ``rules/internal.py``) in the manner of Ruff's rule docs: what it means, why it
happens, how to fix it, an example. Codes are never reused for another meaning.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from trainmedic.rules.notes import Note, cited_notes

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
    #: milder forms of the same finding: {severity: when}, e.g. TM103 is info when the numbers were read fine.
    #: ``severity`` is the rule's worst case; a finding is never more severe than it.
    lighter: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.code}: severity must be one of {SEVERITIES}, not {self.severity!r}")
        for sev in self.lighter:
            if sev not in SEVERITIES or SEVERITIES.index(sev) <= SEVERITIES.index(self.severity):
                raise ValueError(f"{self.code}: a lighter form must be milder than {self.severity!r}, not {sev!r}")

    @property
    def severities(self) -> tuple[str, ...]:
        """Every severity a finding of this rule can carry: the worst case first."""
        return (self.severity, *self.lighter)

    def severity_text(self) -> str:
        return "/".join(self.severities)

    def render(self, seen: str | None = None) -> str:
        """The text ``trainmedic explain`` prints; ``seen`` adds what this run observed."""

        def block(title: str, body: str) -> str:
            body = textwrap.dedent(body).strip("\n")
            return f"{title}\n" + textwrap.indent(body, "  ") + "\n"

        lighter = "".join(f"; {sev} when {when}" for sev, when in self.lighter.items())
        parts = [f"{self.code} {self.name} ({self.severity}{lighter})\n", f"  {self.summary}\n"]
        parts.append(block("What it means", self.what))
        parts.append(block("Why it happens", self.why))
        parts.append(block("How to fix it", self.fix))
        if self.example:
            parts.append(block("Example", self.example))
        if self.references:
            parts.append(block("References", "\n".join(self.references)))
        notes = self.notes()
        if notes:
            parts.append(block("Practitioner notes", "\n".join(
                f"note {n.id}: {n.title}\n" + textwrap.fill(n.gist, 96, initial_indent="  ", subsequent_indent="  ")
                for n in notes)))
        if seen:
            parts.append(block("Seen in this run", seen))
        return "\n".join(parts)

    def notes(self) -> list[Note]:
        """The practitioner notes this rule's text cites ("practitioner note 004", "notes 000 and 002")."""
        return cited_notes((self.summary, self.what, self.why, self.fix, self.example, *self.references))

    def to_dict(self) -> dict[str, object]:
        """The documentation as data (``trainmedic explain CODE --json``)."""
        return {"code": self.code, "name": self.name, "severity": self.severity, "lighter": dict(self.lighter),
                "family": self.family,
                "summary": self.summary, "what": textwrap.dedent(self.what).strip(),
                "why": textwrap.dedent(self.why).strip(), "fix": textwrap.dedent(self.fix).strip(),
                "example": textwrap.dedent(self.example).strip(), "references": list(self.references),
                "notes": [{"id": n.id, "title": n.title, "gist": n.gist} for n in self.notes()]}


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
    from trainmedic.rules import (  # noqa: F401
        checkpoints,
        data,
        forensics,
        internal,
        learning,
        levels,
        ordering,
        rate_audit,
        runtime,
        wiring,
    )

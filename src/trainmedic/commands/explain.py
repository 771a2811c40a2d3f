"""``trainmedic explain CODE`` prints a rule's documentation; ``--list`` lists every code; ``--json`` for tools."""

from __future__ import annotations

import argparse
import json

from trainmedic.errors import UsageError
from trainmedic.rules import all_rules, get_rule


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="print the documentation of a rule code (e.g. TM306)",
                       description="Print what a rule code means, why it happens, how to fix it, and the "
                                   "practitioner notes it cites. Without a code (or with --list): every code.")
    p.add_argument("code", nargs="?", help="a rule code such as TM306, or its name such as loss-spike")
    p.add_argument("--list", action="store_true", help="list every code with its name and severity")
    p.add_argument("--json", action="store_true",
                   help="print JSON: the rule's documentation, or with --list every rule's code, name, "
                        "severity, family and summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list or not args.code:
        rules = all_rules()
        if args.json:
            print(json.dumps({"version": 1, "rules": [
                {"code": r.code, "name": r.name, "severity": r.severity, "severities": list(r.severities),
                 "family": r.family, "summary": r.summary}
                for r in rules]}, indent=1))
            return 0
        family = None
        for r in rules:
            if r.family != family:
                print(f"\n{r.family}" if family is not None else r.family)
                family = r.family
            print(f"  {r.code}  {r.name:<32} {r.severity_text():<13} {r.summary}")
        return 0
    try:
        r = get_rule(args.code)
    except KeyError:
        raise UsageError(
            f"unknown rule code {args.code!r}; `trainmedic explain --list` lists the codes"
        ) from None
    print(json.dumps(r.to_dict(), indent=1) if args.json else r.render())
    return 0

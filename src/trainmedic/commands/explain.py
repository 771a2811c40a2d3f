"""``trainmedic explain CODE`` prints a rule's documentation; ``--list`` lists every code."""

from __future__ import annotations

import argparse

from trainmedic.errors import UsageError
from trainmedic.rules import all_rules, get_rule


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="print the documentation of a rule code (e.g. TM306)")
    p.add_argument("code", nargs="?", help="a rule code such as TM306, or its name such as loss-spike")
    p.add_argument("--list", action="store_true", help="list every code with its name and severity")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list or not args.code:
        family = None
        for r in all_rules():
            if r.family != family:
                family = r.family
                print(f"\n{family}")
            print(f"  {r.code}  {r.name:<32} {r.severity:<8} {r.summary}")
        return 0
    try:
        r = get_rule(args.code)
    except KeyError:
        raise UsageError(
            f"unknown rule code {args.code!r}; `trainmedic explain --list` lists the codes"
        ) from None
    print(r.render())
    return 0

"""The files of a run: ``findings.json``, ``events.jsonl`` and ``report.html``, from one or more drivers.

Every front end writes through :func:`write_run`, once, with everything it knows: a script run with two
optimizers (a GAN) passes both drivers, the script's name and argv and the instrumentation's own findings;
nothing is written and then read back to be patched.

With several drivers, each finding carries ``evidence["optimizer"]`` (its driver's index) and each event
and curve sample carries ``"engine"`` (the same index); the meta line lists the engines.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainmedic.findings import Finding, atomic_write_text, jsonable, write_findings

if TYPE_CHECKING:
    from trainmedic.driver import Driver


def merged_findings(drivers: Sequence[Driver], extra: Iterable[Finding] = ()) -> list[Finding]:
    """Every driver's findings and the extra ones, ordered by first occurrence (step)."""
    if len(drivers) == 1 and not extra:
        return list(drivers[0].findings)
    out: list[Finding] = []
    for i, d in enumerate(drivers):
        for f in d.findings:
            if len(drivers) > 1:
                f.evidence.setdefault("optimizer", i)
                if d.name:
                    f.evidence.setdefault("model", d.name)
            out.append(f)
    out.extend(extra)
    return sorted(out, key=lambda f: f.step if f.step is not None else math.inf)


def event_records(drivers: Sequence[Driver], meta: dict[str, Any] | None = None) -> Iterable[dict[str, Any]]:
    """The lines of ``events.jsonl``: one meta line, then each driver's events and curves."""
    from trainmedic.driver import run_meta  # the driver module imports this one

    multi = len(drivers) > 1
    for i, d in enumerate(drivers):
        for ev in d.event_stream(meta if i == 0 else None):
            if ev.get("type") == "meta":
                if i == 0:
                    if multi:
                        ev = {**ev, "engines": [{"index": j, "name": x.name, "layers": list(x.engine.layers),
                                                 "steps": x.step_count, "run": run_meta(x)}
                                                for j, x in enumerate(drivers)]}
                    yield ev
                continue
            yield {**ev, "engine": i} if multi else ev


def write_run(out: str | os.PathLike[str], drivers: Sequence[Driver], *, meta: dict[str, Any] | None = None,
              extra_findings: Iterable[Finding] = (), html: bool = True) -> Path:
    """Write the run's three files into ``out``. A report that cannot be rendered leaves the other files
    complete, with a TM901 finding saying why."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra = list(extra_findings)
    write_findings(out / "findings.json", merged_findings(drivers, extra))
    atomic_write_text(out / "events.jsonl",
                      "".join(json.dumps(jsonable(e)) + "\n" for e in event_records(drivers, meta)))
    if html:
        try:
            from trainmedic.report.html import write_report

            write_report(out)
        except Exception as exc:  # a report failure must not lose the findings written above
            if drivers:
                drivers[0].engine.disable("html-report", exc)
                write_findings(out / "findings.json", merged_findings(drivers, extra))
            else:
                print(f"trainmedic: report.html not written: {type(exc).__name__}: {exc}", file=sys.stderr)
    return out

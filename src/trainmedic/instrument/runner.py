"""Run a training script as ``__main__`` under instrumentation, as ``python SCRIPT ARGS...`` would."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import traceback
from pathlib import Path

from trainmedic import __version__
from trainmedic.findings import Finding, atomic_write_text, jsonable, write_findings
from trainmedic.instrument.main_module import MainScript, resolve, run_main, set_path
from trainmedic.instrument.patches import CALL_SITE
from trainmedic.instrument.session import Session
from trainmedic.report.console import print_summary


def default_out(script: MainScript) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{script.stem}-{stamp}"


def resolve_script(script: str) -> MainScript:
    """The script as python would run it; a one-line :class:`UsageError` (exit 2) when it is not one."""
    return resolve(script)


def run_script(script: str, argv: list[str], *, out: str | os.PathLike[str] | None = None, heal: bool = False,
               console: bool = True, summary: bool = True, checkpoint_dir: str | os.PathLike[str] | None = None,
               checkpoint_every: int | None = None) -> int:
    """Run ``script`` with ``argv`` under a :class:`Session`; write the report; return the exit code.

    The script's output is untouched; its exit code is passed through (``sys.exit(n)`` -> n; an uncaught
    exception -> its traceback on stderr and 1, as with ``python``). ``__file__``, ``sys.argv`` and
    ``sys.path`` are what ``python SCRIPT ARGS...`` gives (:mod:`~trainmedic.instrument.main_module`).
    A path that is not a Python script raises a one-line :class:`UsageError` before anything is created.
    """
    path = resolve_script(script)
    out_dir = Path(out) if out is not None else default_out(path)
    session = Session("heal" if heal else "watch", console=console, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [path.given, *argv]
    set_path(path)
    code = 0
    session.install()
    try:
        run_main(path)
    except SystemExit as exc:
        code = exit_code(exc)
    except KeyboardInterrupt as exc:
        print_script_traceback(exc, path)
        code = 130
    except BaseException as exc:  # the script's own error: its traceback, exit 1, like python
        if isinstance(exc, Exception):  # the rows behind it first, as Medic's `with` block does
            session.script_raised()
        print_script_traceback(exc, path)
        code = 1
    finally:
        session.uninstall()
        sys.argv = saved_argv
        sys.path[:] = saved_path
    try:
        session.finish(code)
        if session.writes_files():
            write_outputs(session, out_dir, path, argv)
            if summary:
                print_summary(session.findings(), sum(d.step_count for d in session.drivers), session.mode,
                              out_dir)
    except Exception as exc:  # the report must never change the script's exit code
        print(f"trainmedic: could not write the report: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        try:
            session.run.close()
        except Exception:
            pass
    return code


def exit_code(exc: SystemExit) -> int:
    c = exc.code
    if c is None:
        return 0
    if isinstance(c, int):
        return c
    print(c, file=sys.stderr)
    return 1


def print_script_traceback(exc: BaseException, path: MainScript) -> None:
    """The traceback python would print: trainmedic's and runpy's frames above the script are left out."""
    target = path.real_main_file()
    tb = exc.__traceback__
    t = tb
    while t is not None and os.path.realpath(t.tb_frame.f_code.co_filename) != target:
        t = t.tb_next
    sys.stdout.flush()
    shown = traceback.TracebackException(type(exc), exc, t if t is not None else tb)
    _drop_own_frames(shown, set())
    print("".join(shown.format()), end="", file=sys.stderr)
    sys.stderr.flush()


def _drop_own_frames(shown: traceback.TracebackException, seen: set[int]) -> None:
    """Leave out trainmedic's wrappers between the script's frames and torch's (a wrapped loss function,
    ``optimizer.step``, ``backward``) and the call-site frame they call the original through
    (:data:`~trainmedic.instrument.patches.CALL_SITE`): python would not have shown them."""
    if id(shown) in seen:
        return
    seen.add(id(shown))
    kept = [f for f in shown.stack
            if f.name != CALL_SITE and not os.path.realpath(f.filename).startswith(_PACKAGE)]
    if len(kept) != len(shown.stack):
        shown.stack = traceback.StackSummary.from_list(kept)
    for chained in (shown.__cause__, shown.__context__):
        if chained is not None:
            _drop_own_frames(chained, seen)


_PACKAGE = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def write_outputs(session: Session, out: Path, script: MainScript, argv: list[str]) -> Path:
    """findings.json, events.jsonl and report.html, from every driver of the session, written once."""
    meta = {"script": script.given, "argv": argv, "entry": "run", "optimizers": len(session.drivers),
            "loss_calls": session.loss_calls}
    if not session.drivers:
        meta.update({"type": "meta", "version": 1, "trainmedic": __version__, "mode": session.mode, "steps": 0,
                     "epochs": 0, "note": "no optimizer step was seen: nothing was trained"})
        out.mkdir(parents=True, exist_ok=True)
        write_findings(out / "findings.json", session.findings())
        atomic_write_text(out / "events.jsonl", json.dumps(jsonable(meta)) + "\n")
        try:
            from trainmedic.report.html import write_report

            write_report(out)
        except Exception as exc:
            print(f"trainmedic: report.html not written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return out
    return session.run.save(out, meta=meta, extra_findings=session.internal) or out


__all__ = ["Finding", "run_script"]

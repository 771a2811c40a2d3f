"""The live console: one status line at the bottom of the terminal, one line per new problem, a summary.

Everything goes to stderr, and nothing here wraps, replaces or writes to the script's own streams: a
script under trainmedic sees the same ``sys.stdout`` (its encoding, its ``buffer``, ``print(end="")``
fragments) as without it.

On a terminal (stderr is a tty and not a "dumb" one), the status line lives on the terminal's last row,
outside a scroll region that holds everything else, the way apt draws its progress bar: the script's
output (and tqdm's bars) scroll above it and never collide with it, and redrawing it saves and restores
the cursor, so a line the script has half-written stays intact. A finding is printed as a whole line
*inserted above* the script's current line, so it never glues onto a half-written line either. The
terminal is put back (status row cleared, full scroll region) by ``close()``, and at interpreter exit
in every case, also when the script never calls ``close()`` or ``save_report()``. The cursor is never
hidden. Only a process killed outright (SIGKILL) can leave the scroll region set; ``reset`` clears it.

Not on a terminal (a pipe, a file, a notebook): no status line and no escape sequences at all, only the
plain lines. A problem that repeats is printed once and counted in the status line afterwards.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}

# VT100/ECMA-48 controls: every terminal emulator in use (xterm, VTE, iTerm2, Windows Terminal, tmux,
# screen) implements these.
_SAVE, _RESTORE = "\x1b7", "\x1b8"  # DECSC / DECRC: cursor position and attributes
_INDEX = "\x1bD"  # IND: down one row in the same column, scrolling the region at its bottom margin
_CLEAR_LINE = "\x1b[2K"
_FULL_REGION = "\x1b[r"


def _up(n: int) -> str:
    return f"\x1b[{n}A"


def _down(n: int) -> str:
    return f"\x1b[{n}B"


def _goto_row(row: int) -> str:
    return f"\x1b[{row};1H"


def _region(top: int, bottom: int) -> str:
    return f"\x1b[{top};{bottom}r"


_TERMINALS: dict[int, _Terminal] = {}  # one per stream for the whole process


class _Terminal:
    """The terminal behind one stream: its bottom row (the status) and the scroll region above it.

    One per stream for the whole process, shared by every :class:`MedicConsole` writing to it (two Medics
    share one status row). All writes go out as one ``write`` + ``flush`` each, under a lock.
    """

    _lock = threading.Lock()

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.rows = 0  # rows of the screen when the region was set; 0 = no status row now
        self.owner = os.getpid()  # a forked child (DataLoader worker) must not touch the terminal
        self.users: set[int] = set()

    @classmethod
    def of(cls, stream: TextIO) -> _Terminal:
        with cls._lock:
            term = _TERMINALS.get(id(stream))
            if term is None or term.stream is not stream:
                term = _TERMINALS[id(stream)] = cls(stream)
            return term

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            return 0, 0
        return size.lines, size.columns

    def _write(self, data: str) -> None:
        self.stream.write(data)
        self.stream.flush()

    def show(self, user: int, status: str) -> None:
        """Draw ``status`` (already fitted to the width) on the bottom row; set the region up on first use."""
        with self._lock:
            if os.getpid() != self.owner:
                return
            rows, _ = self.size()
            if rows < 3:
                return
            out = []
            if rows != self.rows:
                if 0 < self.rows < rows:  # the terminal grew: the old status row is now inside the screen
                    out.append(_SAVE + _goto_row(self.rows) + _CLEAR_LINE + _RESTORE)
                # Make sure the cursor's row is above the last one (scrolling the screen up by one row if it
                # was on it), then keep the last row out of the scroll region. IND/CUU keep the column, and
                # DECSC/DECRC put the cursor back where the script left it: a half-written line stays whole.
                out.append(_INDEX + _up(1) + _SAVE + _region(1, rows - 1) + _RESTORE)
                self.rows = rows
            self.users.add(user)
            out.append(_SAVE + _goto_row(rows) + _CLEAR_LINE + status + _RESTORE)
            self._write("".join(out))

    def insert(self, lines: list[str]) -> None:
        """Print whole lines above the cursor's line, which moves down intact (a half-written line too)."""
        with self._lock:
            if os.getpid() != self.owner:
                return
            k = len(lines)
            # k blank rows below the cursor (scrolling if needed), then k new rows inserted at the cursor's
            # row: the lines go there and the cursor returns to its own line, now k rows lower.
            seq = _INDEX * k + _up(k) + _SAVE + f"\x1b[{k}L\r" + "\r\n".join(
                _CLEAR_LINE + line for line in lines) + _RESTORE + _down(k)
            self._write(seq)

    def release(self, user: int) -> None:
        """``user`` is done; the last one out clears the status row and gives the whole screen back."""
        with self._lock:
            self.users.discard(user)
            if not self.users:
                self._restore()

    def restore(self) -> None:
        with self._lock:
            self.users.clear()
            self._restore()

    def _restore(self) -> None:
        if self.rows and os.getpid() == self.owner:
            rows = self.rows
            self.rows = 0
            try:
                self._write(_SAVE + _goto_row(rows) + _CLEAR_LINE + _FULL_REGION + _RESTORE)
            except (OSError, ValueError):  # the terminal is gone: nothing left to restore
                pass


@atexit.register
def _restore_terminals() -> None:
    """At exit, whatever the script did or did not call: clear every status row, restore every region."""
    for term in list(_TERMINALS.values()):
        term.restore()


def _is_live(stream: Any) -> bool:
    """A status line only on an interactive terminal that understands cursor controls (and not when the
    environment says ``TRAINMEDIC_NO_LIVE=1``, as the test suite does)."""
    if os.environ.get("TRAINMEDIC_NO_LIVE", "") not in ("", "0"):
        return False
    try:
        if not stream.isatty():
            return False
    except (AttributeError, OSError, ValueError):
        return False
    if os.environ.get("TERM", "") in ("", "dumb", "unknown"):
        return os.name == "nt" and bool(os.environ.get("WT_SESSION"))  # Windows Terminal has no TERM
    return os.name != "nt" or bool(os.environ.get("WT_SESSION"))


class MedicConsole:
    """Status, finding lines and the end-of-run summary of one Medic, on stderr.

    ``status(step, loss, grad_norm, lr, mode)`` is called every step and costs almost nothing when it does
    not draw (at most ``refresh`` draws a second, and only on a terminal). ``line(message, severity, key)``
    prints a message once per ``key`` and counts the repeats. Every write error disables the console: a
    closed stderr never reaches the training loop.
    """

    def __init__(self, enabled: bool = True, refresh: float = 4.0, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self._interval = 1.0 / refresh
        self._last = -math.inf
        self._counts: dict[str, int] = {}
        self._live = enabled and _is_live(self.stream)
        self._terminal = _Terminal.of(self.stream) if self._live else None
        self._colors = _color_system(self.stream) if self._live else None

    @property
    def live_capable(self) -> bool:
        """Whether this console draws a status line (stderr is an interactive terminal)."""
        return self._live

    def status(self, step: int, loss: float, grad_norm: float, lr: float | None, mode: str) -> None:
        if not self._live:
            return
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        text = Text(f"trainmedic[{mode}] step {step}  loss {loss:.4g}  |g| {grad_norm:.3g}", style="dim")
        if lr is not None:
            text.append(f"  lr {lr:.3g}", style="dim")
        for code, n in self._counts.items():
            text.append(f"  {code} x{n}", style="yellow")
        self._guard(lambda term: term.show(id(self), self._ansi(text, term.size()[1] - 1)))

    def line(self, message: str, severity: str = "info", key: str | None = None) -> None:
        """Print a line once per ``key``; later calls with the same key only count."""
        if key is not None:
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._counts[key] > 1:
                return
        if not self.enabled:
            return
        self._print([f"trainmedic: {message}"], _STYLE.get(severity, ""))

    def summary(self, findings: Iterable[Any], steps: int, mode: str, report_path: str | os.PathLike[str]) -> None:
        """The end-of-run summary ``trainmedic run`` prints (:func:`summary_lines`); ends the status line."""
        self.close()
        if self.enabled:
            self._print(summary_lines(findings, steps, mode, report_path), "")

    def close(self) -> None:
        """Clear the status row and give the terminal back (again at exit if never called)."""
        if self._terminal is not None:
            self._guard(lambda term: term.release(id(self)))

    # ------------------------------------------------------------------------------------------------
    def _print(self, lines: list[str], style: str) -> None:
        if not self._live:
            try:
                self.stream.write("".join(line + "\n" for line in lines))
                self.stream.flush()
            except (OSError, ValueError):
                self.enabled = False
            return

        def insert(term: _Terminal) -> None:
            width = max(20, term.size()[1] - 1)
            rows = [row for line in lines for row in (textwrap.wrap(line, width, subsequent_indent="    ",
                                                                    break_on_hyphens=False) or [""])]
            term.insert([self._ansi(Text(row, style=style), width) for row in rows])

        self._guard(insert)

    def _guard(self, action) -> None:
        try:
            action(self._terminal)
        except (OSError, ValueError):  # stderr closed or gone: stop drawing, never raise into the loop
            self._live = False
            self.enabled = False

    def _ansi(self, text: Text, width: int) -> str:
        """``text`` cut to ``width`` columns (no line wrap on the terminal), with colours as escape codes."""
        text = text.copy()
        text.truncate(max(1, width), overflow="ellipsis")
        buf = io.StringIO()
        Console(file=buf, force_terminal=self._colors is not None, color_system=self._colors, width=10_000,
                highlight=False, emoji=False, markup=False).print(text, end="", soft_wrap=True)
        return buf.getvalue()


def _color_system(stream: TextIO) -> str | None:
    """What rich finds for the real stream (None under NO_COLOR, on a dumb terminal, ...)."""
    try:
        return Console(file=stream).color_system
    except Exception:  # detection must never cost the run
        return None


# ----------------------------------------------------------------------------------------------------
# the end-of-run summary (``trainmedic run`` and the Medic API print the same)
# ----------------------------------------------------------------------------------------------------
def _get(finding: Any, key: str) -> Any:
    return finding.get(key) if isinstance(finding, dict) else getattr(finding, key, None)


def first_sentence_of_fix(code: str) -> str:
    """The first sentence of the rule's "How to fix it", with the command that prints the rest."""
    from trainmedic.rules.registry import get_rule

    try:
        text = " ".join(get_rule(code).fix.split())
    except Exception:
        return f"see `trainmedic explain {code}`"
    cut = text.find(". ")
    text = text if cut < 0 else text[: cut + 1]
    return (text if len(text) <= 160 else text[:157] + "...") + f"  (trainmedic explain {code})"


def summary_lines(findings: Iterable[Any], steps: int, mode: str, report_path: str | os.PathLike[str]) -> list[str]:
    """The summary: how many findings in how many steps, each with its first step, action and fix.

    ``findings`` are :class:`~trainmedic.findings.Finding` objects or their dicts; ``steps == 0`` means no
    optimizer step was seen. ``report_path`` is the report (``DIR/report.html``) or its directory.
    """
    findings = list(findings)
    report = Path(report_path)
    if report.suffix != ".html":
        report = report / "report.html"
    out = []
    if not steps and not findings:
        out.append("trainmedic: no optimizer step was seen, nothing to check")
    elif not findings:
        out.append(f"trainmedic: no findings in {steps} steps ({mode} mode)")
    else:
        out.append(f"trainmedic: {len(findings)} finding(s) in {steps} steps ({mode} mode)")
        for f in findings:
            code, step = _get(f, "code"), _get(f, "step")
            where = f"step {step}" if step is not None else "before training"
            out.append(f"  {code} {_get(f, 'name')} [{_get(f, 'severity')}] first at {where}: {_get(f, 'message')}")
            if _get(f, "action"):
                out.append(f"      action: {_get(f, 'action')}")
            out.append(f"      fix: {first_sentence_of_fix(str(code))}")
    out.append(f"trainmedic: report {report}")
    return out


def print_summary(findings: Iterable[Any], steps: int, mode: str, report_path: str | os.PathLike[str],
                  stream: TextIO | None = None) -> None:
    """Write :func:`summary_lines` to ``stream`` (default stderr) as plain lines, after the script's stdout."""
    stream = stream if stream is not None else sys.stderr
    try:
        sys.stdout.flush()  # what the script printed comes first
    except (AttributeError, OSError, ValueError):
        pass
    stream.write("".join(line + "\n" for line in summary_lines(findings, steps, mode, report_path)))
    stream.flush()

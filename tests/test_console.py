"""The live console on a real pseudo-terminal: the script's stdout is untouched, the terminal is restored.

``console_child.py`` trains a tiny model with ``Medic(console=True)`` while printing ``end=""``
fragments, reading ``sys.stdout.encoding`` and writing to ``sys.stdout.buffer``; it never calls
``close()``. Its stdout and stderr are ptys (so both are terminals and the status line is drawn).
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from trainmedic.findings import Finding
from trainmedic.report.console import MedicConsole, print_summary, summary_lines

HERE = Path(__file__).parent
ROWS, COLS = 24, 100

sys.path.insert(0, str(HERE))
import console_child  # noqa: E402


def _pty(rows: int = ROWS, cols: int = COLS) -> tuple[int, int]:
    """A pty pair with a window size and no output translation (bytes arrive as written)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


def _run_child(args: list[str], *, same_pty: bool) -> tuple[int, bytes, bytes]:
    """Run the child with stdout and stderr on ptys (one shared pty, or one each); returns (rc, out, err)."""
    out_m, out_s = _pty()
    err_m, err_s = (out_m, out_s) if same_pty else _pty()
    env = {k: v for k, v in os.environ.items() if k not in ("TRAINMEDIC_NO_LIVE", "NO_COLOR")}
    env.update(TERM="xterm-256color", PYTHONPATH=str(HERE.parent / "src"), COLUMNS=str(COLS), LINES=str(ROWS))
    proc = subprocess.Popen([sys.executable, str(HERE / "console_child.py"), *args], stdin=subprocess.DEVNULL,
                            stdout=out_s, stderr=err_s, env=env, close_fds=True)
    os.close(out_s)
    if not same_pty:
        os.close(err_s)
    chunks: dict[int, list[bytes]] = {out_m: [], err_m: []}
    open_fds = set(chunks)
    deadline = time.monotonic() + 120
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 1.0)
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its side
                data = b""
            if data:
                chunks[fd].append(data)
            else:
                open_fds.discard(fd)
        if not ready and proc.poll() is not None:
            break
    rc = proc.wait(timeout=30)
    for fd in {out_m, err_m}:
        os.close(fd)
    return rc, b"".join(chunks[out_m]), b"".join(chunks[err_m]) if not same_pty else b""


def test_script_stdout_is_byte_for_byte_what_it_wrote_and_terminal_is_restored():
    rc, out, err = _run_child([], same_pty=False)
    assert rc == 0, err.decode(errors="replace")[-2000:]
    # The script's own stream: exactly its bytes (encoding read as utf-8, fragments joined, buffer writes).
    assert out == console_child.expected_stdout("utf-8"), out
    text = err.decode()
    # The status line was drawn on the last row, inside a scroll region that excludes that row...
    assert f"\x1b[1;{ROWS - 1}r" in text and f"\x1b[{ROWS};1H" in text
    assert "trainmedic[heal] step" in text
    # ...the finding was printed as a line of its own...
    assert "TM301" in text and "nonfinite-loss" in text
    # ...and at exit, without close(), the whole screen was given back: the last region set is the full one
    # and the status row was cleared after the last status was drawn.
    regions = re.findall(r"\x1b\[(\d*;?\d*)r", text)
    assert regions[-1] == "", regions
    assert text.rstrip("\x1b78").endswith(f"\x1b[{ROWS};1H\x1b[2K\x1b[r") or text.endswith(
        f"\x1b7\x1b[{ROWS};1H\x1b[2K\x1b[r\x1b8")
    # The cursor is never hidden (so it cannot stay hidden).
    assert "\x1b[?25l" not in text


def _screen(data: bytes):
    import pyte

    screen = pyte.Screen(COLS, ROWS)
    pyte.ByteStream(screen).feed(data.replace(b"\n", b"\r\n"))  # what the tty's output processing does
    return screen


def _tqdm_free(line: str) -> str:
    """A screen line without the timings tqdm prints (they differ from run to run)."""
    return re.sub(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.?]+it/s\]", "[time]", line).rstrip()


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def test_screen_is_the_scripts_own_plus_whole_trainmedic_lines():
    """The terminal shows what the script shows without trainmedic, plus trainmedic's lines, each whole."""
    pytest.importorskip("pyte")
    rc, combined, _ = _run_child(["--tqdm"], same_pty=True)
    assert rc == 0, combined.decode(errors="replace")[-2000:]
    rc, reference, _ = _run_child(["--tqdm", "--no-console"], same_pty=True)
    assert rc == 0
    screen, ref = _screen(combined), _screen(reference)
    lines = [_tqdm_free(line) for line in screen.display]
    expected = [_tqdm_free(line) for line in ref.display]
    shown = "\n".join(lines)
    ours = [line for line in lines if line.startswith("trainmedic:")]
    assert len(ours) == 1 and ours[0].startswith("trainmedic: TM301 nonfinite-loss at step 25"), shown
    # Take trainmedic's line out: what is left is the script's screen, line for line (the end="" fragments
    # joined, tqdm's bars on their rows, the bytes written to sys.stdout.buffer).
    assert _trim([line for line in lines if line not in ours]) == _trim(expected), shown
    assert "encoding=utf-8 | fragment one | fragment two" in lines and "finished" in lines
    # At exit: no status left on the last row, the cursor visible, the scroll region the whole screen.
    assert not any("trainmedic[heal]" in line for line in lines), shown
    assert not screen.cursor.hidden
    assert screen.margins is None or (screen.margins.top, screen.margins.bottom) == (0, ROWS - 1)


# ----------------------------------------------------------------------------------------------------
# not a terminal: plain lines only; the summary
# ----------------------------------------------------------------------------------------------------
def test_in_a_pipe_there_are_plain_lines_and_no_escape_codes():
    buf = io.StringIO()
    console = MedicConsole(stream=buf)
    assert not console.live_capable
    for step in range(20):
        console.status(step, 0.5, 1.0, 0.1, "watch")
    console.line("TM303 exploding-gradients at step 3", "warning", key="TM303")
    console.line("again", "warning", key="TM303")  # counted, not reprinted
    console.close()
    assert buf.getvalue() == "trainmedic: TM303 exploding-gradients at step 3\n"


def test_a_closed_stderr_never_reaches_the_training_loop():
    buf = io.StringIO()
    console = MedicConsole(stream=buf)
    buf.close()
    console.line("anything", "error")  # must not raise
    console.summary([], 10, "watch", "out")
    assert not console.enabled


def _findings() -> list[Finding]:
    return [Finding(code="TM301", message="loss is nan", step=12, epoch=0, evidence={}, action="step skipped"),
            Finding(code="TM113", message="1460 rows", step=None, epoch=None, evidence={}, action=None)]


def test_summary_is_the_one_run_prints(tmp_path):
    lines = summary_lines(_findings(), 40, "heal", tmp_path)
    assert lines[0] == "trainmedic: 2 finding(s) in 40 steps (heal mode)"
    assert lines[1].startswith("  TM301 nonfinite-loss [error] first at step 12: loss is nan")
    assert lines[2] == "      action: step skipped"
    assert lines[3].startswith("      fix: ") and lines[3].endswith("(trainmedic explain TM301)")
    assert lines[4].startswith("  TM113 small-data [info] first at before training: 1460 rows".replace(
        "first at before", "first at before"))
    assert lines[-1] == f"trainmedic: report {tmp_path / 'report.html'}"
    assert summary_lines([], 0, "watch", "r/report.html") == [
        "trainmedic: no optimizer step was seen, nothing to check", "trainmedic: report r/report.html"]
    assert summary_lines([], 7, "watch", "r")[0] == "trainmedic: no findings in 7 steps (watch mode)"
    buf = io.StringIO()
    print_summary(_findings(), 40, "heal", tmp_path, stream=buf)
    assert buf.getvalue() == "".join(line + "\n" for line in lines)
    console_buf = io.StringIO()
    MedicConsole(stream=console_buf).summary([f.to_dict() for f in _findings()], 40, "heal", tmp_path)
    assert console_buf.getvalue() == buf.getvalue()

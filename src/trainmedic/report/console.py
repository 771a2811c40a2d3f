"""The live console: one status line that updates in place, and one line per new finding or action.

It never floods: the status line is redrawn at most ``refresh`` times a second and only on a terminal;
a problem that repeats is printed once and counted in the status line afterwards.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class MedicConsole:
    def __init__(self, enabled: bool = True, refresh: float = 4.0, stream=None) -> None:
        self.enabled = enabled
        self._console = Console(file=stream or sys.stderr, highlight=False)
        self._interval = 1.0 / refresh
        self._last = 0.0
        self._live: Live | None = None
        self._counts: dict[str, int] = {}

    @property
    def live_capable(self) -> bool:
        return self.enabled and self._console.is_terminal

    def status(self, step: int, loss: float, grad_norm: float, lr: float | None, mode: str) -> None:
        if not self.live_capable:
            return
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        text = Text(f"trainmedic[{mode}] step {step}  loss {loss:.4g}  |g| {grad_norm:.3g}", style="dim")
        if lr is not None:
            text.append(f"  lr {lr:.3g}", style="dim")
        for code, n in self._counts.items():
            text.append(f"  {code}x{n}", style="yellow")
        if self._live is None:
            self._live = Live(text, console=self._console, auto_refresh=False, transient=True,
                              redirect_stdout=True, redirect_stderr=False)
            self._live.start()
        self._live.update(text, refresh=True)

    def line(self, message: str, severity: str = "info", key: str | None = None) -> None:
        """Print a line once per ``key``; later calls with the same key only count."""
        if key is not None:
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._counts[key] > 1:
                return
        if not self.enabled:
            return
        self._console.print(Text(f"trainmedic: {message}", style=_STYLE.get(severity, "")), soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

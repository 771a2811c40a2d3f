"""What ``fit`` shows while it works: progress bars on a terminal, plain log lines in a pipe or a log file.

A 200k-row fit runs for minutes; in a pipe (``trainmedic fit ... 2>&1 | tee log``) bars would be noise, and
silence looks like a hang. So off a terminal each finished (fold, model) prints one line on stderr::

    fit: fold 2/5 lightgbm done in 12.3 s; elapsed 41 s, about 1 min 20 s left

and a long network training adds a line at most every ``every_s`` seconds. The estimate of the time left
is each model's mean time per fold so far times the folds it still has to run; before a model has
finished once it is not counted, and the line says so.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO


def duration(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class FitProgress:
    """Fold and model progress for ``fit``: ``mode`` is "bars", "lines" or "off"."""

    def __init__(self, mode: str, folds: int, models: list[str], stream: IO[str] | None = None,
                 every_s: float = 30.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.mode = mode
        self.folds = folds
        self.models = list(models)
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.clock = clock
        self.t0 = clock()
        self.times: dict[str, list[float]] = {m: [] for m in self.models}
        self.fold = 0
        self.current = ""
        self.unit = "epoch"
        self.model_t0 = self.t0
        self.last_line = self.t0
        self.bar = None
        if mode == "bars":
            self._start_bars()

    # ---- terminal bars ------------------------------------------------------------------------------
    def _start_bars(self) -> None:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # pragma: no cover
            self.mode = "lines"
            return
        console = Console(stderr=True)
        if not console.is_terminal:
            self.mode = "lines"
            return
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        self.bar.start()
        self.fold_task = self.bar.add_task("folds", total=self.folds)
        self.model_task = self.bar.add_task("model", total=1)

    # ---- events ---------------------------------------------------------------------------------------
    def model(self, fold: int, name: str, total: int = 1, unit: str = "epoch") -> None:
        """A (fold, model) starts; ``unit`` names what ``epoch`` counts (a network's epochs, a study's trials)."""
        self.fold, self.current, self.unit = fold, name, unit
        self.model_t0 = self.last_line = self.clock()
        if self.bar is not None:
            self.bar.update(self.model_task, description=f"fold {fold + 1}/{self.folds}: {name}",
                            completed=0, total=total)

    def epoch(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.model_task, completed=done, total=total)
        elif self.mode == "lines" and self.clock() - self.last_line >= self.every_s:
            self.last_line = self.clock()
            self._line(f"fold {self.fold + 1}/{self.folds} {self.current}: {self.unit} {done}, "
                       f"{duration(self.last_line - self.model_t0)} so far; elapsed {duration(self.last_line - self.t0)}")

    def model_done(self) -> float:
        now = self.clock()
        took = now - self.model_t0
        self.times.setdefault(self.current, []).append(took)
        if self.mode == "lines":
            self._line(f"fold {self.fold + 1}/{self.folds} {self.current} done in {duration(took)}; "
                       f"elapsed {duration(now - self.t0)}, {self.estimate()}")
        return took

    def estimate(self) -> str:
        left, unknown = 0.0, []
        for m in self.models:
            runs = self.times.get(m, [])
            if not runs:
                unknown.append(m)
                continue
            left += sum(runs) / len(runs) * (self.folds - len(runs))
        if unknown:
            return f"about {duration(left)} left and {', '.join(unknown)} not timed yet"
        return f"about {duration(left)} left"

    def fold_done(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.fold_task)

    def note(self, text: str) -> None:
        if self.mode == "lines":
            self._line(text)

    def _line(self, text: str) -> None:
        try:
            print(f"fit: {text}", file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stream must not end the fit
            self.mode = "off"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


__all__ = ["FitProgress", "duration"]

"""Bounded containers for per-step signals.

A run may last millions of steps; nothing here grows with the number of steps. ``Ring`` keeps the last
``capacity`` values for the detectors; ``Downsampled`` keeps a whole-run curve for the report by halving
its resolution whenever it fills up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Ring:
    """A fixed-size float ring buffer; ``values()`` returns the contents oldest first."""

    __slots__ = ("_buf", "_n", "_i", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._buf = np.full(self.capacity, np.nan)
        self._n = 0
        self._i = 0

    def append(self, value: float) -> None:
        self._buf[self._i] = value
        self._i = (self._i + 1) % self.capacity
        if self._n < self.capacity:
            self._n += 1

    def __len__(self) -> int:
        return self._n

    def values(self, last: int | None = None) -> np.ndarray:
        n = self._n if last is None else min(int(last), self._n)
        if n == 0:
            return np.empty(0)
        start = (self._i - n) % self.capacity
        if start + n <= self.capacity:
            return self._buf[start : start + n].copy()
        return np.concatenate([self._buf[start:], self._buf[: (start + n) - self.capacity]])

    def last(self) -> float:
        return float(self._buf[(self._i - 1) % self.capacity]) if self._n else math.nan

    def clear(self) -> None:
        self._n = 0
        self._i = 0

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "values": self.values().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"])
        for v in state["values"]:
            self.append(v)


class Downsampled:
    """Whole-run series of rows (step, *columns) in at most ``capacity`` rows.

    Every ``stride``-th step is kept; when the buffer is full every other row is dropped and the stride
    doubles, so a run of any length keeps an evenly spaced curve. Memory is O(capacity).
    """

    def __init__(self, columns: tuple[str, ...], capacity: int = 2048) -> None:
        self.columns = columns
        self.capacity = int(capacity)
        self.stride = 1
        self.rows: list[tuple] = []

    def offer(self, step: int, *values: Any) -> None:
        if step % self.stride:
            return
        self.rows.append((step, *values))
        if len(self.rows) >= self.capacity:
            self.rows = self.rows[::2]
            self.stride *= 2
            # Keep only rows on the new stride so spacing stays even.
            self.rows = [r for r in self.rows if r[0] % self.stride == 0]

    def as_dicts(self) -> list[dict[str, Any]]:
        names = ("step", *self.columns)
        return [dict(zip(names, r)) for r in self.rows]

    def state_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "capacity": self.capacity, "stride": self.stride,
                "rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.columns = tuple(state["columns"])
        self.capacity = int(state["capacity"])
        self.stride = int(state["stride"])
        self.rows = [tuple(r) for r in state["rows"]]

"""Time behind an injectable seam: business code asks a Clock, never the OS directly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall-clock time, ns since the epoch (timestamps that get stored)."""
        ...

    def monotonic_ns(self) -> int:
        """A monotonic clock for measuring intervals and pacing."""
        ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += ns

    def set(self, ns: int) -> None:
        if ns < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = ns

"""Time sources: the system clock for production and a settable fake for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock and monotonic time, in seconds."""

    def now(self) -> float:
        """Return the current wall-clock time as unix seconds."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic time in seconds, for measuring intervals."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to; both readings advance together."""

    def __init__(self, now: float = 1_700_000_000.0, monotonic: float = 1_000.0) -> None:
        self._now = now
        self._monotonic = monotonic

    def now(self) -> float:
        """Return the fake wall-clock time."""
        return self._now

    def monotonic(self) -> float:
        """Return the fake monotonic time."""
        return self._monotonic

    def set(self, now: float) -> None:
        """Set the wall-clock time; the monotonic reading moves by the same amount if forward."""
        if now > self._now:
            self._monotonic += now - self._now
        self._now = now

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards with advance(); use set()")
        self._now += seconds
        self._monotonic += seconds

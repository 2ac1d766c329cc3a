"""Log lines that someone outside can trigger, at a bounded rate.

Anything a client, a stranger on the network or a peer can cause (a refused request, a bad
datagram, a server error on their input) must not write one log line per attempt: a flood would
fill the disk and bury the lines that matter. :class:`RateLimitedLog` lets a burst of lines of
one kind through, then at most one per interval, and says how many it held back in the next
line it writes. Lines are told apart by their format string (not their arguments), so varying
input does not open a new allowance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_KINDS = 256  # distinct format strings remembered; beyond that the oldest is forgotten


@dataclass
class _Allowance:
    tokens: float
    last: float
    held_back: int = 0


class RateLimitedLog:
    """A logger wrapper: ``burst`` lines per format string, then ``per_s`` lines per second."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        per_s: float = 0.2,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or per_s <= 0:
            raise ValueError("need burst >= 1 and per_s > 0")
        self._logger = logger
        self._burst = burst
        self._per_s = per_s
        self._now = now
        self._kinds: dict[str, _Allowance] = {}

    def _admit(self, msg: str) -> int | None:
        """None when the line is held back, else how many of its kind were held back before."""
        now = self._now()
        found = self._kinds.get(msg)
        if found is None:
            if len(self._kinds) >= MAX_KINDS:
                self._kinds.pop(next(iter(self._kinds)))
            found = self._kinds[msg] = _Allowance(float(self._burst), now)
        found.tokens = min(float(self._burst), found.tokens + (now - found.last) * self._per_s)
        found.last = now
        if found.tokens < 1:
            found.held_back += 1
            return None
        found.tokens -= 1
        held, found.held_back = found.held_back, 0
        return held

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log unless held back; returns whether the line was written."""
        if not self._logger.isEnabledFor(level):
            return False
        held = self._admit(msg)
        if held is None:
            return False
        if held:
            msg, args = msg + " (%d similar lines held back)", (*args, held)
        self._logger.log(level, msg, *args, exc_info=exc_info, stacklevel=3)
        return True

    def info(self, msg: str, *args: object) -> bool:
        return self.log(logging.INFO, msg, *args)

    def warning(self, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, msg, *args)

    def error(self, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: object) -> bool:
        """An ERROR line with the current exception's traceback (when not held back)."""
        return self.log(logging.ERROR, msg, *args, exc_info=True)

"""A small reordering buffer per track: packets out in sequence order, gaps reported.

Packets arrive almost in order (loopback, or a few milliseconds of network reordering, plus
retransmissions the SFU asked for by NACK). The buffer holds at most ``capacity`` packets; when
it is full, or its oldest packet has waited ``max_delay_s``, the missing ones in front are given
up on and reported as a gap, so a lost packet costs the recording a bounded delay only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    """A packet out of the buffer: its extended sequence number, and whether packets were
    lost right before it."""

    seq: int
    item: T
    after_gap: bool


class JitterBuffer(Generic[T]):
    """Reorders by RTP sequence number (extended across the 16-bit wrap)."""

    def __init__(self, capacity: int, max_delay_s: float) -> None:
        self._capacity = capacity
        self._max_delay = max_delay_s
        self._held: dict[int, tuple[float, T]] = {}
        self._next: int | None = None  # extended seq expected next
        self._highest = -1
        self._gap = False
        self.lost = 0
        self.late = 0

    def _extend(self, seq: int) -> int:
        if self._highest < 0:
            return seq
        base = self._highest & ~0xFFFF
        ext = base | seq
        if ext - self._highest > 0x8000:
            ext -= 0x10000
        elif self._highest - ext > 0x8000:
            ext += 0x10000
        return ext

    def push(self, seq: int, item: T, now: float) -> list[Released[T]]:
        """Add one packet; returns what can be released now, in order."""
        ext = self._extend(seq)
        if self._next is None:
            self._next = ext
        if ext < self._next or ext in self._held:
            self.late += 1  # already released past it, or a duplicate
            return []
        self._highest = max(self._highest, ext)
        self._held[ext] = (now, item)
        return self._release(now)

    def _release(self, now: float) -> list[Released[T]]:
        out: list[Released[T]] = []
        while self._held:
            assert self._next is not None
            if self._next in self._held:
                _, item = self._held.pop(self._next)
                out.append(Released(self._next, item, self._gap))
                self._gap = False
                self._next += 1
                continue
            oldest = min(self._held)
            waited = now - self._held[oldest][0]
            if len(self._held) < self._capacity and waited < self._max_delay:
                break
            self.lost += oldest - self._next
            self._next = oldest
            self._gap = True
        return out

    def flush(self) -> list[Released[T]]:
        """Everything still held, in order (gaps reported): the end of a recording."""
        return self._release(float("inf"))

"""Which packets of an incoming stream are missing, for NACKs toward the publisher.

aiortc's NackGenerator walks every sequence number of a gap, so one forged packet with a far-away
sequence number costs tens of thousands of set insertions. Here a gap wider than ``max_gap`` is
taken as a stream restart instead, and each missing packet is asked for at most ``max_tries``
times.
"""

from __future__ import annotations

from .rtpbytes import seq_newer


class NackTracker:
    """Tracks missing sequence numbers of one RTP stream."""

    def __init__(self, max_gap: int = 128, max_tries: int = 3, window: int = 512) -> None:
        self.max_seq: int | None = None
        self.missing: dict[int, int] = {}  # seq -> times asked
        self._max_gap = max_gap
        self._max_tries = max_tries
        self._window = window

    def add(self, seq: int) -> list[int]:
        """Record a received packet; returns sequence numbers newly found missing."""
        if self.max_seq is None:
            self.max_seq = seq
            return []
        if not seq_newer(seq, self.max_seq):
            self.missing.pop(seq, None)  # a retransmission or a late packet
            return []
        gap = (seq - self.max_seq) & 0xFFFF
        self.max_seq = seq
        if gap > self._max_gap:
            self.missing.clear()
            return []
        new = [(seq - i) & 0xFFFF for i in range(gap - 1, 0, -1)]
        for s in new:
            self.missing[s] = 1
        self._truncate()
        return new

    def due(self) -> list[int]:
        """Missing packets to ask for again (each at most ``max_tries`` times in all)."""
        out = []
        for s, tries in list(self.missing.items()):
            if tries >= self._max_tries:
                del self.missing[s]
            else:
                self.missing[s] = tries + 1
                out.append(s)
        return out

    def _truncate(self) -> None:
        if self.max_seq is None or len(self.missing) < 64:
            return
        floor = (self.max_seq - self._window) & 0xFFFF
        for s in [s for s in self.missing if seq_newer(floor, s)]:
            del self.missing[s]

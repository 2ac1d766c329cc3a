"""Pending logins: what a started login keeps server-side until the broker redirects back."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Protocol

from fortrolig.core.clock import Clock
from fortrolig.core.errors import RateLimited


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A started login, kept server-side until the broker redirects back (or it expires)."""

    state: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    return_to: str
    consultation_ref: str
    redirect_uri: str
    required_acr: str | None
    created_at: float
    expires_at: float


class PendingStore(Protocol):
    """Keeps pending logins by ``state``; each can be taken once."""

    async def put(self, pending: PendingLogin) -> None:
        """Remember ``pending``; raise ``RateLimited`` when too many are pending."""
        ...

    async def take(self, state: str) -> PendingLogin | None:
        """Remove and return the login for ``state`` (expired ones too, for a clear error)."""
        ...


class MemoryPendingStore:
    """An in-process :class:`PendingStore`. Expired entries are dropped ``grace_s`` after they
    expire (until then ``take`` returns them so the caller can say "expired" not "unknown")."""

    def __init__(self, clock: Clock, *, max_entries: int = 10_000, grace_s: float = 600.0) -> None:
        self._clock = clock
        self._max = max_entries
        self._grace = grace_s
        self._entries: dict[str, PendingLogin] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, pending: PendingLogin) -> None:
        """Remember ``pending`` under its state."""
        self._purge(self._clock.now())
        if len(self._entries) >= self._max:
            raise RateLimited("too many eID logins pending", code="eid_too_many_pending")
        if pending.state in self._entries:  # pragma: no cover - 256 random bits
            raise ValueError("duplicate state")
        self._entries[pending.state] = pending
        heapq.heappush(self._heap, (pending.expires_at + self._grace, pending.state))

    async def take(self, state: str) -> PendingLogin | None:
        """Remove and return the login for ``state``, if it is still remembered."""
        self._purge(self._clock.now())
        return self._entries.pop(state, None)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, state = heapq.heappop(self._heap)
            entry = self._entries.get(state)
            if entry is not None and entry.expires_at + self._grace <= now:
                del self._entries[state]

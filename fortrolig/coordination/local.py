"""In-process coordination: one node, no Redis (the embedded default and the unit tests).

Entries expire by the injected clock exactly as Redis keys would, so the same rules hold.
"""

from __future__ import annotations

import itertools

from fortrolig.core.clock import Clock

from .base import Lease, NodeInfo


class LocalCoordination:
    """:class:`~fortrolig.coordination.base.Coordination` in this process."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}  # id -> (info, expires at)
        self._leases: dict[str, tuple[Lease, float]] = {}
        self._fences = itertools.count(1)
        self._drain: set[str] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        self._nodes[node.node_id] = (node, self._clock.monotonic() + ttl_s)

    async def remove_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        now = self._clock.monotonic()
        return [info for info, until in self._nodes.values() if until > now]

    async def lease(self, room_id: str) -> Lease | None:
        found = self._leases.get(room_id)
        if found is None or found[1] <= self._clock.monotonic():
            return None
        return found[0]

    async def acquire(
        self, room_id: str, node_id: str, ttl_s: float, *, replacing: Lease | None
    ) -> Lease | None:
        if await self.lease(room_id) != replacing:
            return None
        lease = Lease(room_id, node_id, next(self._fences))
        self._leases[room_id] = (lease, self._clock.monotonic() + ttl_s)
        return lease

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        current = await self.lease(lease.room_id)
        if current is None:  # forgotten and free: take it again under a new fence
            return await self.acquire(lease.room_id, lease.node_id, ttl_s, replacing=None)
        if current != lease:
            return None
        self._leases[lease.room_id] = (lease, self._clock.monotonic() + ttl_s)
        return lease

    async def release(self, lease: Lease) -> None:
        if await self.lease(lease.room_id) == lease:
            del self._leases[lease.room_id]

    async def request_drain(self, node_id: str) -> None:
        self._drain.add(node_id)

    async def drain_requested(self, node_id: str) -> bool:
        return node_id in self._drain

    async def clear_drain(self, node_id: str) -> None:
        self._drain.discard(node_id)

    async def ping(self) -> None:
        return None

    def forget_everything(self) -> None:
        """Drop every entry (what a restarted Redis without persistence does; tests)."""
        self._nodes.clear()
        self._leases.clear()

"""The coordination interface and its records (no Redis here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fortrolig.core.errors import Unavailable


class CoordinationUnavailable(Unavailable):
    """The coordination store cannot be reached; what needs it is refused until it returns."""

    code = "coordination_unavailable"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as the registry knows it (refreshed every heartbeat)."""

    node_id: str
    region: str
    url: str
    started_at: float
    heartbeat_at: float
    rooms: int = 0
    participants: int = 0
    draining: bool = False

    @property
    def load(self) -> float:
        """What placement minimises: participants, with rooms as a tie-breaker."""
        return self.participants + 0.5 * self.rooms


@dataclass(frozen=True, slots=True)
class Lease:
    """Room ownership: ``fence`` grows with every new owner, so a stale owner's lease (lower
    fence) never renews once another node took the room."""

    room_id: str
    node_id: str
    fence: int


class Coordination(Protocol):
    """What nodes share to agree where rooms live. Every method raises
    :class:`CoordinationUnavailable` when the store cannot be reached."""

    async def start(self) -> None:
        """Connect (may be called again after :meth:`close` only on a new object)."""
        ...

    async def close(self) -> None:
        """Disconnect; idempotent."""
        ...

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        """Register or refresh ``node``; the entry disappears ``ttl_s`` after the last one."""
        ...

    async def remove_node(self, node_id: str) -> None:
        """Drop a node's entry at once (a clean shutdown)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every live node."""
        ...

    async def lease(self, room_id: str) -> Lease | None:
        """The room's current lease, if any."""
        ...

    async def acquire(
        self, room_id: str, node_id: str, ttl_s: float, *, replacing: Lease | None
    ) -> Lease | None:
        """Give the room to ``node_id`` if its lease is still ``replacing`` (None: vacant); the
        new lease, or None when someone else changed it first."""
        ...

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        """Extend ``lease``. The same lease while it is still ours; a new one (higher fence) if
        the store had forgotten it (a restarted Redis) and nobody took the room; None when
        another node holds it now: the caller must stop serving the room."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the room up if ``lease`` is still the current one."""
        ...

    async def request_drain(self, node_id: str) -> None:
        """Ask ``node_id`` to drain (it sees the request at its next heartbeat)."""
        ...

    async def drain_requested(self, node_id: str) -> bool:
        """Whether someone asked ``node_id`` to drain."""
        ...

    async def clear_drain(self, node_id: str) -> None:
        """Forget a drain request (a node starting again under the same id)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`CoordinationUnavailable` unless the store answers."""
        ...

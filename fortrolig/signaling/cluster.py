"""This node's part in the cluster: its registry entry, room placement, and the leases it holds.

A room lives on one node (as in LiveKit). The first ``hello`` for a room without a live owner
places it: on the least-loaded live node of one of the room's regions that is not draining, by
acquiring the room's lease *for that node* (a compare-and-set, so of two nodes placing one room
at once exactly one wins and both send the client to the same owner). No node in the allowed
regions means ``no_node_in_region`` (HTTP 503): a room never moves outside its regions.

The owner renews its leases every heartbeat. A lease it could not renew for ``lease_ttl_s`` (by
its own monotonic clock, so a node frozen past its lease knows it on waking) or that another
node holds now is *lost*: the caller ends its copy of the room, so two nodes never serve one room.
Redis being unreachable for less than the lease keeps every established room as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fortrolig.coordination.base import Coordination, CoordinationUnavailable, Lease, NodeInfo
from fortrolig.core.clock import Clock
from fortrolig.core.config_cluster import CoordinationConfig
from fortrolig.core.errors import Unavailable

log = logging.getLogger(__name__)

PLACEMENT_ATTEMPTS = 3


class NoNodeInRegion(Unavailable):
    """No live node may serve the room: every node of its regions is down or draining."""

    code = "no_node_in_region"


@dataclass(frozen=True, slots=True)
class ThisNode:
    """Who this node is in the registry."""

    node_id: str
    region: str
    url: str
    started_at: float


@dataclass(slots=True)
class _Held:
    lease: Lease
    renewed_at: float  # monotonic seconds of the last successful renewal (or acquisition)


class Cluster:
    """Placement and lease keeping for one node over a :class:`Coordination` store."""

    def __init__(
        self,
        coordination: Coordination,
        node: ThisNode,
        clock: Clock,
        cfg: CoordinationConfig,
        *,
        standalone: bool = False,
    ) -> None:
        self.coordination = coordination
        # One node with in-process coordination: it is live whenever this code runs, even
        # before its first heartbeat (and in unit tests, which run no heartbeat loop).
        self.standalone = standalone
        self.node = node
        self.clock = clock
        self.cfg = cfg
        self.draining = False
        self.healthy = True  # the last heartbeat reached the store
        self.known_nodes: list[NodeInfo] = []
        self._held: dict[str, _Held] = {}
        # Rooms placed on a node since its last heartbeat: placement counts them at once, so a
        # burst of new rooms spreads instead of piling onto the node that looked idle.
        self._placed_since_beat: dict[str, int] = {}

    # -- registry -------------------------------------------------------------------------

    def info(self, rooms: int, participants: int) -> NodeInfo:
        """This node's registry entry now."""
        return NodeInfo(
            node_id=self.node.node_id,
            region=self.node.region,
            url=self.node.url,
            started_at=self.node.started_at,
            heartbeat_at=self.clock.now(),
            rooms=rooms,
            participants=participants,
            draining=self.draining,
        )

    async def beat(self, rooms: int, participants: int) -> list[str]:
        """Heartbeat, refresh the node list and renew every lease; the rooms whose lease was
        lost (the caller must end its copy of each)."""
        try:
            await self.coordination.heartbeat(self.info(rooms, participants), self.cfg.node_ttl_s)
            self.known_nodes = await self.coordination.nodes()
            self._placed_since_beat.clear()
            if not self.healthy:
                log.info("coordination reachable again")
            self.healthy = True
        except CoordinationUnavailable as exc:
            if self.healthy:
                log.warning("coordination unreachable: %s", exc.message)
            self.healthy = False
        return await self._renew_all()

    async def leave(self) -> None:
        """Give up every lease and the registry entry (a clean stop); best effort."""
        for room_id in list(self._held):
            await self.release(room_id)
        try:
            await self.coordination.remove_node(self.node.node_id)
        except CoordinationUnavailable:
            pass

    # -- leases ---------------------------------------------------------------------------

    def holds(self, room_id: str) -> bool:
        """Whether this node holds the room's lease and it has not lapsed by the local clock."""
        held = self._held.get(room_id)
        return held is not None and not self._lapsed(held)

    def held_rooms(self) -> list[str]:
        """Every room whose lease this node holds."""
        return list(self._held)

    def _lapsed(self, held: _Held) -> bool:
        return self.clock.monotonic() - held.renewed_at >= self.cfg.lease_ttl_s

    async def _renew_all(self) -> list[str]:
        lost = []
        for room_id, held in list(self._held.items()):
            if self._lapsed(held):  # frozen or cut off past the lease: someone may own it now
                lost.append(room_id)
                continue
            try:
                renewed = await self.coordination.renew(held.lease, self.cfg.lease_ttl_s)
            except CoordinationUnavailable:
                continue  # kept until it lapses by the local clock
            if renewed is None:
                lost.append(room_id)
            else:
                held.lease, held.renewed_at = renewed, self.clock.monotonic()
        for room_id in lost:
            self._held.pop(room_id, None)
            log.warning("lease of room %s lost: ending this node's copy", room_id)
        return lost

    async def release(self, room_id: str) -> None:
        """Stop holding the room (it ended or moved); best effort toward the store."""
        held = self._held.pop(room_id, None)
        if held is None:
            return
        try:
            await self.coordination.release(held.lease)
        except CoordinationUnavailable:
            pass  # it lapses by itself

    # -- placement ------------------------------------------------------------------------

    async def check_placeable(self, regions: Sequence[str]) -> None:
        """Refuse (``no_node_in_region``) unless a live node of ``regions`` takes rooms."""
        nodes = await self._live_nodes()
        if not self._candidates(nodes, regions):
            raise NoNodeInRegion(_no_node_message(regions))

    async def owner_of(self, room_id: str, regions: Sequence[str]) -> NodeInfo:
        """The node that serves ``room_id``, placing the room first if it has no live owner.

        When the answer is this node, it holds the room's lease afterwards.
        """
        if self.holds(room_id):
            return self.info(0, 0)
        for _ in range(PLACEMENT_ATTEMPTS):
            lease = await self.coordination.lease(room_id)
            nodes = {n.node_id: n for n in await self._live_nodes()}
            if lease is not None and lease.node_id in nodes:
                return self._owned_by(lease, nodes[lease.node_id])
            best = self._best(list(nodes.values()), regions)
            new = await self.coordination.acquire(
                room_id, best.node_id, self.cfg.lease_ttl_s, replacing=lease
            )
            if new is not None:
                self._placed_since_beat[best.node_id] = (
                    self._placed_since_beat.get(best.node_id, 0) + 1
                )
                return self._owned_by(new, best)
        raise Unavailable("the room's placement kept changing; try again", code="placement_busy")

    async def _live_nodes(self) -> list[NodeInfo]:
        nodes = await self.coordination.nodes()
        if self.standalone and all(n.node_id != self.node.node_id for n in nodes):
            nodes.append(self.info(0, 0))
        return nodes

    def _owned_by(self, lease: Lease, node: NodeInfo) -> NodeInfo:
        if node.node_id == self.node.node_id:
            self._held[lease.room_id] = _Held(lease, self.clock.monotonic())
        return node

    def _best(self, nodes: list[NodeInfo], regions: Sequence[str]) -> NodeInfo:
        candidates = self._candidates(nodes, regions)
        if not candidates:
            raise NoNodeInRegion(_no_node_message(regions))
        return min(
            candidates,
            key=lambda n: (n.load + self._placed_since_beat.get(n.node_id, 0), n.node_id),
        )

    def _candidates(self, nodes: list[NodeInfo], regions: Sequence[str]) -> list[NodeInfo]:
        return [n for n in nodes if n.region in regions and not n.draining]


def _no_node_message(regions: Sequence[str]) -> str:
    return f"no node of region {', '.join(regions)} is available; try again shortly"

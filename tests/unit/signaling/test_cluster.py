"""Placement and lease keeping (signaling/cluster.py) on in-process coordination and a fake
clock: the rules, without processes."""

from __future__ import annotations

import pytest

from fortrolig.coordination.base import CoordinationUnavailable, Lease, NodeInfo
from fortrolig.coordination.local import LocalCoordination
from fortrolig.core.clock import FakeClock
from fortrolig.core.config_cluster import CoordinationConfig
from fortrolig.core.errors import Unavailable
from fortrolig.signaling.cluster import Cluster, NoNodeInRegion, ThisNode

CFG = CoordinationConfig(heartbeat_s=1, node_ttl_s=3, lease_ttl_s=20)


def cluster(
    coord: LocalCoordination, clock: FakeClock, node_id: str, region: str = "eu-north"
) -> Cluster:
    return Cluster(coord, ThisNode(node_id, region, f"http://{node_id}", clock.now()), clock, CFG)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def coord(clock: FakeClock) -> LocalCoordination:
    return LocalCoordination(clock)


async def test_a_room_goes_to_the_least_loaded_node_of_its_regions(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a, b, c = (
        cluster(coord, clock, n, r)
        for n, r in (("a", "eu-north"), ("b", "eu-north"), ("c", "eu-west"))
    )
    await a.beat(rooms=3, participants=6)
    await b.beat(rooms=1, participants=2)
    await c.beat(rooms=0, participants=0)  # idle, but in the wrong region
    owner = await a.owner_of("room_1", ("eu-north",))
    assert owner.node_id == "b" and not a.holds("room_1")
    # Everyone agrees afterwards, whoever is asked.
    assert (await c.owner_of("room_1", ("eu-north",))).node_id == "b"
    assert (await b.owner_of("room_1", ("eu-north",))).node_id == "b" and b.holds("room_1")


async def test_a_burst_of_rooms_spreads_before_the_next_heartbeat(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a, b = cluster(coord, clock, "a"), cluster(coord, clock, "b")
    await a.beat(0, 0)
    await b.beat(0, 0)
    owners = [(await a.owner_of(f"room_{i}", ("eu-north",))).node_id for i in range(6)]
    assert owners.count("a") == owners.count("b") == 3


async def test_no_node_in_region_and_draining_nodes_take_no_rooms(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a = cluster(coord, clock, "a")
    await a.beat(0, 0)
    with pytest.raises(NoNodeInRegion) as info:
        await a.owner_of("room_1", ("eu-west",))
    assert (info.value.code, info.value.status) == ("no_node_in_region", 503)
    with pytest.raises(NoNodeInRegion):
        await a.check_placeable(("eu-south",))
    a.draining = True
    await a.beat(0, 0)
    with pytest.raises(NoNodeInRegion):
        await a.check_placeable(("eu-north",))


async def test_a_dead_owner_is_replaced_once_its_registry_entry_expires(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a, b = cluster(coord, clock, "a"), cluster(coord, clock, "b")
    await a.beat(0, 0)
    await b.beat(5, 9)
    assert (await a.owner_of("room_1", ("eu-north",))).node_id == "a"
    first = await coord.lease("room_1")
    clock.advance(2)
    await b.beat(5, 9)  # a stops heartbeating (killed)
    assert (await b.owner_of("room_1", ("eu-north",))).node_id == "a"  # not expired yet
    clock.advance(1.5)
    await b.beat(5, 9)
    assert (await b.owner_of("room_1", ("eu-north",))).node_id == "b"
    second = await coord.lease("room_1")
    assert first is not None and second is not None and second.fence > first.fence


async def test_a_frozen_owner_loses_its_rooms_when_it_wakes(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a, b = cluster(coord, clock, "a"), cluster(coord, clock, "b")
    await a.beat(0, 0)
    await b.beat(0, 0)
    await a.owner_of("room_1", ("eu-north",))
    assert a.holds("room_1")
    clock.advance(21)  # frozen past the lease by its own clock
    assert not a.holds("room_1")
    await b.beat(0, 0)
    assert (await b.owner_of("room_1", ("eu-north",))).node_id == "b"
    assert await a.beat(0, 0) == ["room_1"]  # the caller ends its copy
    assert a.held_rooms() == []


async def test_taken_over_while_frozen_for_less_than_the_lease(
    coord: LocalCoordination, clock: FakeClock
) -> None:
    a, b = cluster(coord, clock, "a"), cluster(coord, clock, "b")
    await a.beat(0, 0)
    await b.beat(0, 0)
    await a.owner_of("room_1", ("eu-north",))
    clock.advance(5)  # past the node TTL, inside the lease
    await b.beat(0, 0)
    assert (await b.owner_of("room_1", ("eu-north",))).node_id == "b"
    assert await a.beat(0, 0) == ["room_1"]  # renewal finds another owner


class FlakyCoordination(LocalCoordination):
    """In-process coordination that can be made unreachable."""

    down = False

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        self._fail()
        await super().heartbeat(node, ttl_s)

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        self._fail()
        return await super().renew(lease, ttl_s)

    async def nodes(self) -> list[NodeInfo]:
        self._fail()
        return await super().nodes()

    def _fail(self) -> None:
        if self.down:
            raise CoordinationUnavailable("down")


async def test_an_outage_shorter_than_the_lease_keeps_the_rooms(clock: FakeClock) -> None:
    coord = FlakyCoordination(clock)
    a = cluster(coord, clock, "a")
    await a.beat(0, 0)
    await a.owner_of("room_1", ("eu-north",))
    coord.down = True
    for _ in range(15):
        clock.advance(1)
        assert await a.beat(1, 2) == []
    assert not a.healthy and a.holds("room_1")
    with pytest.raises(Unavailable):
        await a.owner_of("room_2", ("eu-north",))
    assert (await a.owner_of("room_1", ("eu-north",))).node_id == "a"  # known locally
    coord.down = False
    coord.forget_everything()  # Redis came back empty
    clock.advance(1)
    assert await a.beat(1, 2) == []
    assert a.healthy and a.holds("room_1")
    lease = await coord.lease("room_1")
    assert lease is not None and lease.node_id == "a"


async def test_an_outage_longer_than_the_lease_ends_the_rooms(clock: FakeClock) -> None:
    coord = FlakyCoordination(clock)
    a = cluster(coord, clock, "a")
    await a.beat(0, 0)
    await a.owner_of("room_1", ("eu-north",))
    coord.down = True
    lost: list[str] = []
    for _ in range(21):
        clock.advance(1)
        lost += await a.beat(1, 2)
    assert lost == ["room_1"]

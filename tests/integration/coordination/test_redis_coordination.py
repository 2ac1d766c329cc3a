"""RedisCoordination against a real redis-server: registry expiry, leases with fencing, and
what happens when Redis goes away and comes back empty."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fortrolig.coordination.base import CoordinationUnavailable, Lease, NodeInfo
from fortrolig.coordination.redis_store import LEASE_KEY, RedisCoordination
from tests.support.redis_server import TempRedis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[TempRedis]:
    server = TempRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def coord(redis_server: TempRedis) -> AsyncIterator[RedisCoordination]:
    c = RedisCoordination(redis_server.url, timeout_s=0.5)
    await c.start()
    try:
        yield c
    finally:
        await c.close()


def node(node_id: str, region: str = "eu-north", **kw: object) -> NodeInfo:
    return NodeInfo(node_id, region, f"http://{node_id}", 1.0, time.time(), **kw)  # type: ignore[arg-type]


async def test_a_node_that_stops_heartbeating_disappears_by_itself(
    coord: RedisCoordination,
) -> None:
    await coord.heartbeat(node("a", rooms=2, participants=3), ttl_s=0.4)
    await coord.heartbeat(node("b", "eu-west"), ttl_s=30)
    listed = {n.node_id: n for n in await coord.nodes()}
    assert set(listed) == {"a", "b"} and listed["a"].participants == 3
    await asyncio.sleep(0.6)
    assert [n.node_id for n in await coord.nodes()] == ["b"]
    await coord.remove_node("b")
    assert await coord.nodes() == []


async def test_a_lease_has_one_owner_and_a_growing_fence(coord: RedisCoordination) -> None:
    results = await asyncio.gather(
        *(coord.acquire("room_1", f"n{i}", 5, replacing=None) for i in range(6))
    )
    won = [r for r in results if r is not None]
    assert len(won) == 1
    first = won[0]
    assert await coord.lease("room_1") == first
    assert await coord.renew(first, 5) == first
    # Another node takes it over only by naming the lease it replaces.
    assert await coord.acquire("room_1", "n9", 5, replacing=Lease("room_1", "x", 1)) is None
    second = await coord.acquire("room_1", "n9", 5, replacing=first)
    assert second is not None and second.fence > first.fence
    assert await coord.renew(first, 5) is None  # the old owner learns it lost the room
    await coord.release(first)  # a stale release changes nothing
    assert await coord.lease("room_1") == second
    await coord.release(second)
    assert await coord.lease("room_1") is None


async def test_a_lease_lapses_without_renewal(coord: RedisCoordination) -> None:
    lease = await coord.acquire("room_2", "a", 0.3, replacing=None)
    assert lease is not None
    await asyncio.sleep(0.5)
    assert await coord.lease("room_2") is None


async def test_redis_down_is_a_typed_error_and_recovery_needs_no_restart(
    coord: RedisCoordination, redis_server: TempRedis
) -> None:
    lease = await coord.acquire("room_3", "a", 30, replacing=None)
    assert lease is not None
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(CoordinationUnavailable):
        await coord.heartbeat(node("a"), 6)
    with pytest.raises(CoordinationUnavailable):
        await coord.renew(lease, 30)
    assert time.monotonic() - started < 5  # fails fast: the heartbeat loop keeps its pace
    redis_server.start()  # back, empty: no registry, no leases
    await coord.heartbeat(node("a"), 6)  # the same client object reconnects by itself
    assert [n.node_id for n in await coord.nodes()] == ["a"]
    renewed = await coord.renew(lease, 30)  # forgotten and free: taken back, new fence
    assert renewed is not None and renewed.node_id == "a"
    assert await coord.lease("room_3") == renewed


async def test_keys_are_the_documented_ones(coord: RedisCoordination) -> None:
    lease = await coord.acquire("room_4", "a", 5, replacing=None)
    assert lease is not None
    assert coord._redis is not None
    assert await coord._redis.get(LEASE_KEY.format(room_id="room_4")) == f"a|{lease.fence}"
    ttl = await coord._redis.pttl(LEASE_KEY.format(room_id="room_4"))
    assert 0 < ttl <= 5000

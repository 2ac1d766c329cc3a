"""Coordination through Redis (redis-py asyncio): the only module that imports redis.

Every call fails fast (``redis_timeout_s``, no client-side retries: the callers' loops retry
every heartbeat) and raises :class:`~.base.CoordinationUnavailable` when Redis cannot be reached.
Lease changes are Lua scripts, so each compare-and-set is atomic on the server. Nothing here is
the record of anything durable: a Redis restarted empty is re-filled by the next heartbeats and
lease renewals (see :meth:`RedisCoordination.renew`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .base import CoordinationUnavailable, Lease, NodeInfo

T = TypeVar("T")

# --- keys (every key Fortrolig writes; prefix "fortrolig:") -----------------------------------

NODE_KEY = "fortrolig:node:{node_id}"
"""JSON of one node's :class:`NodeInfo`. TTL ``coordination.node_ttl_s`` (3 s), refreshed every
heartbeat (1 s): a node that stops heartbeating disappears by itself."""
NODES_INDEX = "fortrolig:nodes"
"""Sorted set of node ids scored by their last heartbeat (unix seconds), to list the nodes
without SCAN. No TTL; ids whose ``NODE_KEY`` has expired are removed when the set is read."""
LEASE_KEY = "fortrolig:room:{room_id}:lease"
"""``<node_id>|<fence>``: who serves the room. TTL ``coordination.lease_ttl_s`` (20 s), renewed
by its owner every heartbeat with a compare-and-pexpire script."""
FENCE_KEY = "fortrolig:room:{room_id}:fence"
"""The room's fencing counter (INCR on every new owner). TTL one day, refreshed when it grows:
after a day without owners no lease of the old counter can still exist."""
FENCE_TTL_S = 86_400
DRAIN_KEY = "fortrolig:node:{node_id}:drain"
"""Set by ``fortrolig node drain``: the node drains at its next heartbeat. TTL one day (a node
id that never comes back leaves nothing behind); deleted when the node starts afresh."""
DRAIN_TTL_S = 86_400

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local val = ARGV[2] .. '|' .. fence
redis.call('SET', KEYS[1], val, 'PX', ARGV[3])
return val
"""
_RENEW = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return cur
end
if cur then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local val = ARGV[2] .. '|' .. fence
redis.call('SET', KEYS[1], val, 'PX', ARGV[3])
return val
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _value(lease: Lease) -> str:
    return f"{lease.node_id}|{lease.fence}"


def _lease(room_id: str, raw: object) -> Lease | None:
    if not isinstance(raw, str) or "|" not in raw:
        return None
    node_id, _, fence = raw.rpartition("|")
    try:
        return Lease(room_id, node_id, int(fence))
    except ValueError:
        return None


def _node(raw: str) -> NodeInfo | None:
    try:
        data = json.loads(raw)
        return NodeInfo(**data)
    except (ValueError, TypeError):
        return None


class RedisCoordination:
    """:class:`~fortrolig.coordination.base.Coordination` on one Redis server."""

    def __init__(self, url: str, *, timeout_s: float, password: str | None = None) -> None:
        self._url = url
        self._timeout = timeout_s
        self._password = password
        self._redis: aioredis.Redis | None = None

    async def start(self) -> None:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self._url,
                decode_responses=True,
                password=self._password,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
                retry=None,
                health_check_interval=0,
            )

    async def close(self) -> None:
        r, self._redis = self._redis, None
        if r is not None:
            await r.aclose()

    async def _run(self, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        r = self._redis
        if r is None:
            raise CoordinationUnavailable("coordination is not started")
        try:
            return await call(r)
        except (RedisError, OSError, TimeoutError) as exc:
            raise CoordinationUnavailable(f"Redis is unreachable: {type(exc).__name__}") from None

    async def heartbeat(self, node: NodeInfo, ttl_s: float) -> None:
        body = json.dumps(
            {
                "node_id": node.node_id,
                "region": node.region,
                "url": node.url,
                "started_at": node.started_at,
                "heartbeat_at": node.heartbeat_at,
                "rooms": node.rooms,
                "participants": node.participants,
                "draining": node.draining,
            }
        )

        async def call(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(NODE_KEY.format(node_id=node.node_id), body, px=int(ttl_s * 1000))
                pipe.zadd(NODES_INDEX, {node.node_id: node.heartbeat_at})
                await pipe.execute()

        await self._run(call)

    async def remove_node(self, node_id: str) -> None:
        async def call(r: aioredis.Redis) -> None:
            await r.delete(NODE_KEY.format(node_id=node_id))
            await r.zrem(NODES_INDEX, node_id)

        await self._run(call)

    async def nodes(self) -> list[NodeInfo]:
        async def call(r: aioredis.Redis) -> list[NodeInfo]:
            ids = [str(i) for i in await r.zrange(NODES_INDEX, 0, -1)]
            if not ids:
                return []
            raws = [
                None if x is None else str(x)
                for x in await r.mget([NODE_KEY.format(node_id=i) for i in ids])
            ]
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                await r.zrem(NODES_INDEX, *gone)
            return [n for raw in raws if raw is not None and (n := _node(raw)) is not None]

        return await self._run(call)

    async def lease(self, room_id: str) -> Lease | None:
        raw = await self._run(lambda r: r.get(LEASE_KEY.format(room_id=room_id)))
        return _lease(room_id, raw)

    async def acquire(
        self, room_id: str, node_id: str, ttl_s: float, *, replacing: Lease | None
    ) -> Lease | None:
        expected = "" if replacing is None else _value(replacing)
        raw = await self._script(_ACQUIRE, room_id, expected, node_id, ttl_s)
        return _lease(room_id, raw)

    async def renew(self, lease: Lease, ttl_s: float) -> Lease | None:
        raw = await self._script(_RENEW, lease.room_id, _value(lease), lease.node_id, ttl_s)
        return _lease(lease.room_id, raw)

    async def _script(self, body: str, room_id: str, a: str, b: str, ttl_s: float) -> Any:
        keys = [LEASE_KEY.format(room_id=room_id), FENCE_KEY.format(room_id=room_id)]
        args = [a, b, str(int(ttl_s * 1000)), str(FENCE_TTL_S)]
        return await self._run(lambda r: r.eval(body, 2, *keys, *args))

    async def release(self, lease: Lease) -> None:
        key = LEASE_KEY.format(room_id=lease.room_id)
        await self._run(lambda r: r.eval(_RELEASE, 1, key, _value(lease)))

    async def request_drain(self, node_id: str) -> None:
        key = DRAIN_KEY.format(node_id=node_id)
        await self._run(lambda r: r.set(key, "1", ex=DRAIN_TTL_S))

    async def drain_requested(self, node_id: str) -> bool:
        key = DRAIN_KEY.format(node_id=node_id)
        return bool(await self._run(lambda r: r.exists(key)))

    async def clear_drain(self, node_id: str) -> None:
        """Forget a drain request (a node starting again under the same id)."""
        key = DRAIN_KEY.format(node_id=node_id)
        await self._run(lambda r: r.delete(key))

    async def ping(self) -> None:
        async def call(r: aioredis.Redis) -> None:
            await r.ping()

        await self._run(call)

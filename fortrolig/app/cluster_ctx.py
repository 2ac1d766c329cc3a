"""The node's records database, its coordination store and its heartbeat, as cleanup contexts.

Start-up order: the records database opens and migrates (a node that cannot reach it never
serves), coordination connects, the first heartbeat registers the node; then a loop beats every
``coordination.heartbeat_s`` until shutdown. Shutdown (SIGTERM) drains first: the node stops
taking rooms at once (its registry entry says ``draining``), waits up to
``coordination.drain_deadline_s`` for its live rooms to end, then hands the rest over (clients
reconnect to their new owner); the cleanup context then leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from fortrolig.coordination.base import Coordination, CoordinationUnavailable
from fortrolig.coordination.local import LocalCoordination
from fortrolig.coordination.redis_store import RedisCoordination
from fortrolig.core.clock import Clock
from fortrolig.core.config import Config, read_secret_file
from fortrolig.signaling.records_sql import open_records
from fortrolig.signaling.service import SignalingService
from fortrolig.storage import Database

log = logging.getLogger(__name__)

NODE_ID_FILE = "node-id"


def coordination_for(config: Config, clock: Clock) -> Coordination:
    """Redis when ``coordination.redis_url`` is set, else in this process."""
    redis = redis_coordination(config)
    return redis if redis is not None else LocalCoordination(clock)


def redis_coordination(config: Config) -> RedisCoordination | None:
    """The configured Redis (its password read from ``redis_password_file``), or None."""
    c = config.coordination
    if not c.redis_url:
        return None
    password = None
    if c.redis_password_file is not None:
        password = read_secret_file(c.redis_password_file).decode("utf-8")
    return RedisCoordination(c.redis_url, timeout_s=c.redis_timeout_s, password=password)


def node_id_for(config: Config) -> str:
    """``coordination.node_id``, else an id kept in the data dir (stable across restarts, so a
    restarted node takes back the leases it still holds)."""
    if config.coordination.node_id:
        return config.coordination.node_id
    path: Path = config.server.data_dir / NODE_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        node_id = f"node-{secrets.token_hex(4)}"
        path.write_text(node_id + "\n", encoding="utf-8")
        path.chmod(0o600)
        return node_id


def records_ctx(db: Database) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open and migrate the records database for the life of the application."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await open_records(db)
        log.info("records open: %s", db.url)
        try:
            yield
        finally:
            await db.close()

    return ctx


def cluster_ctx(
    service: SignalingService, config: Config
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Connect coordination, register, heartbeat until shutdown, then drain and leave."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cluster = service.cluster
        await cluster.coordination.start()
        with contextlib.suppress(CoordinationUnavailable):  # a restart takes rooms again
            await cluster.coordination.clear_drain(cluster.node.node_id)
        await service.cluster_tick()  # registered before the first request
        task = asyncio.get_running_loop().create_task(
            _beat(service, config.coordination.drain_deadline_s), name="cluster-heartbeat"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await cluster.leave()
            await cluster.coordination.close()

    return ctx


async def _beat(service: SignalingService, drain_deadline_s: float) -> None:
    cluster = service.cluster
    interval = service.config.coordination.heartbeat_s
    draining: asyncio.Task[None] | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            await service.cluster_tick()
            if draining is None and await cluster.coordination.drain_requested(
                cluster.node.node_id
            ):
                log.info("drain requested: taking no new rooms")
                draining = asyncio.get_running_loop().create_task(
                    drain(service, drain_deadline_s), name="cluster-drain"
                )
        except CoordinationUnavailable:
            pass  # the cluster tick has logged it; the next beat may succeed
        except Exception:  # a bad beat must never end the loop: the next one may succeed
            log.exception("cluster heartbeat failed")


def drain_on_shutdown(
    service: SignalingService, config: Config
) -> Callable[[web.Application], Awaitable[None]]:
    """An ``on_shutdown`` handler: aiohttp runs it while WebSocket handlers still live (before
    it waits for them and before the cleanup contexts), so sessions can finish or move."""

    async def handler(app: web.Application) -> None:
        await drain(service, config.coordination.drain_deadline_s)

    return handler


async def drain(service: SignalingService, deadline_s: float) -> None:
    """Take no new rooms; let live rooms end by themselves until ``deadline_s``; hand over the
    rest (their clients reconnect and are placed on another node of the room's regions)."""
    cluster = service.cluster
    cluster.draining = True
    with contextlib.suppress(Exception):
        await service.cluster_tick()  # the registry says "draining" at once
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while service.rooms.participant_count() and loop.time() < until:  # noqa: ASYNC110 - a count, no event to wait on
        await asyncio.sleep(0.5)
    for room in service.rooms.all():
        await service.lose_room(room.id, "node_draining")

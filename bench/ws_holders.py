"""WebSocket holders for bench.websockets: one process opens and holds its share of the
connections, as many idle browser tabs would, until the measuring process says stop.

Each connection is a client in a consultation's waiting room: a single-use join token from the
node's HTTP API, ``hello`` → ``welcome``, ``join`` → ``waiting``, and from then on only what an
idle room page does (fortrolig/web/static/js/call.js): an application ``ping`` every 10 s
(browsers cannot see WebSocket pings), the server's ``pong``, a ``resume_token`` every
``auth.resume_token_ttl_s / 2``, and the server's WebSocket pings every
``signaling.heartbeat_s`` answered by aiohttp's autoping. A connection the node closes while
held is counted as dropped with its close code.

Connections come from loopback source addresses 127.10.x.y (``bench.figures.source_address``),
at most ``per_address`` each, so the node's per-address caps (``edge.max_websockets_per_address``
= 16) stay as shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from fortrolig.app.fdlimit import raise_nofile_limit

from .common import CLIENT_CORE, pin_process
from .figures import source_address

APP_PING_S = 10.0  # what the room page sends (PING_EVERY_MS in call.js)
OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 30.0
HOLDER_NICE = 5  # the probes in the measuring process go first on the shared client core


@dataclass(frozen=True)
class HolderPlan:
    """One holder process's share: a room per connection and the addresses to use."""

    worker: int
    base_url: str
    access_token: str
    rooms: tuple[str, ...]
    first_address: int
    per_address: int
    concurrency: int
    lifetime_s: float
    app_ping_s: float = APP_PING_S  # 0: no application pings (a diagnostic, not a browser)


async def new_token(http: aiohttp.ClientSession, base_url: str, room: str) -> str:
    """A single-use client join token for ``room`` (POST /api/v1/rooms/{id}/tokens)."""
    url = f"{base_url}/api/v1/rooms/{room}/tokens"
    async with http.post(url, json={"role": "client"}) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 201:
            raise RuntimeError(f"token refused: {resp.status} {body}")
        return str(body["token"])


async def expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next text message, which must be of type ``kind``."""
    msg = await ws.receive(timeout=OPEN_TIMEOUT_S)
    if msg.type != aiohttp.WSMsgType.TEXT:
        raise RuntimeError(f"wanted {kind}, got {msg.type.name} {ws.close_code}")
    data: dict[str, Any] = json.loads(msg.data)
    if data.get("type") != kind:
        raise RuntimeError(f"wanted {kind}, got {data.get('type')}: {data.get('code')}")
    return data


class Holders:
    """This process's connections and what happened to them."""

    def __init__(self, plan: HolderPlan) -> None:
        self.plan = plan
        self.ws_url = "ws://" + plan.base_url.split("://", 1)[1] + "/ws"
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.sessions: dict[str, aiohttp.ClientSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.received: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.open_errors: Counter[str] = Counter()
        self.pings = 0
        self.holding = False

    def _session(self, index: int) -> aiohttp.ClientSession:
        address = source_address(self.plan.first_address + index // self.plan.per_address)
        session = self.sessions.get(address)
        if session is None:
            connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=0)
            session = aiohttp.ClientSession(connector=connector)
            self.sessions[address] = session
        return session

    async def open_one(self, http: aiohttp.ClientSession, index: int) -> None:
        token = await new_token(http, self.plan.base_url, self.plan.rooms[index])
        ws = await self._session(index).ws_connect(self.ws_url, autoping=True, heartbeat=None)
        try:
            await ws.send_str(json.dumps({"type": "hello", "v": 1, "token": token}))
            await expect(ws, "welcome")
            await ws.send_str(json.dumps({"type": "join"}))
            await expect(ws, "waiting")
        except BaseException:
            await ws.close()
            raise
        self.sockets.append(ws)
        task = asyncio.get_running_loop().create_task(self._idle(ws))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _idle(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """What an idle room page does: ping every 10 s (random phase), read what comes."""
        period = self.plan.app_ping_s or float("inf")
        due = time.monotonic() + random.uniform(0, period) if self.plan.app_ping_s else period
        while True:
            try:
                wait = due - time.monotonic()
                msg = await ws.receive(timeout=max(0.0, wait) if wait != float("inf") else None)
            except TimeoutError:
                await ws.send_str('{"type":"ping"}')
                self.pings += 1
                due += period
                continue
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received[str(json.loads(msg.data).get("type"))] += 1
                continue
            if self.holding:
                self.dropped[f"{msg.type.name}:{ws.close_code}"] += 1
            return

    async def open_all(self) -> float:
        """Open every connection (``concurrency`` at a time); seconds it took."""
        started = time.monotonic()
        gate = asyncio.Semaphore(self.plan.concurrency)
        connector = aiohttp.TCPConnector(limit=8)  # token requests, from 127.0.0.1
        headers = {"Authorization": f"Bearer {self.plan.access_token}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

            async def one(index: int) -> None:
                async with gate:
                    try:
                        await self.open_one(http, index)
                    except Exception as exc:
                        self.open_errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1

            await asyncio.gather(*(one(i) for i in range(len(self.plan.rooms))))
        return time.monotonic() - started

    def stats(self) -> dict[str, Any]:
        return {
            "worker": self.plan.worker,
            "open": sum(1 for ws in self.sockets if not ws.closed),
            "open_errors": dict(self.open_errors),
            "dropped_while_held": dict(self.dropped),
            "app_pings_sent": self.pings,
            "received": dict(self.received),
            "addresses": len(self.sessions),
        }

    async def close(self) -> None:
        self.holding = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for task in list(self.tasks):
            task.cancel()
        for session in self.sessions.values():
            await session.close()


async def _run(plan: HolderPlan, conn: Connection) -> None:
    holders = Holders(plan)
    loop = asyncio.get_running_loop()
    try:
        open_s = await holders.open_all()
        holders.holding = True
        conn.send(("opened", {"open_s": open_s, **holders.stats()}))
        # The measuring process says "stop" (or the lifetime bound ends a forgotten holder).
        ready = loop.run_in_executor(None, conn.poll, plan.lifetime_s)
        await ready
        conn.send(("held", holders.stats()))
    finally:
        await holders.close()


def holder_main(plan: HolderPlan, conn: Connection) -> None:
    """Process entry point: client core, a little nicer than the probes, enough descriptors."""
    pin_process(CLIENT_CORE)
    os.nice(HOLDER_NICE)
    raise_nofile_limit(len(plan.rooms) + 256)
    try:
        asyncio.run(_run(plan, conn))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc} (pid {os.getpid()})"))

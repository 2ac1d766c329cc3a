"""Media worker processes controlled by the signaling process (one per core).

:class:`WorkerPool` has the same coroutine interface as :class:`~fortrolig.media.sfu.Sfu`, so
signaling cannot tell them apart. A room is placed on the least-loaded live worker when its first
participant arrives and stays there. A worker that dies is detected at once (its pipe closes);
every participant it carried is told ``media_failed`` (reason ``worker_died``) so the client
reconnects and lands on a live worker, and a replacement worker is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fortrolig.core.errors import Conflict
from fortrolig.core.metrics import Sample

from . import channel
from .peer import PeerEvents
from .settings import MediaSettings
from .sfu import samples_from_snapshots

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
START_TIMEOUT_S = 30.0
MAX_RESTARTS = 20  # per pool lifetime: a worker that keeps dying is a bug to look at, not loop on


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    rooms: dict[str, set[str]] = field(default_factory=dict)  # room -> participants
    snapshot: dict[str, Any] | None = None
    alive: bool = True
    task: asyncio.Task[None] | None = None
    events_task: asyncio.Task[None] | None = None
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def load(self) -> int:
        return sum(len(p) for p in self.rooms.values())


class WorkerPool:
    """N media worker processes behind the MediaBackend interface."""

    def __init__(self, settings: MediaSettings, workers: int) -> None:
        if workers < 1:
            raise ValueError("at least one media worker")
        self.settings = settings
        self.size = workers
        self.restarts = 0
        self._workers: list[_Worker] = []
        self._room_worker: dict[str, _Worker] = {}
        self._events: dict[tuple[str, str], PeerEvents] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._dead_snapshots: list[dict[str, Any]] = []
        self._worker_up = asyncio.Event()

    async def start(self) -> None:
        """Start every worker and wait until each says ready."""
        for i in range(self.size):
            self._workers.append(await self._spawn(i))
        self._worker_up.set()

    async def _spawn(self, index: int) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fortrolig.media.worker",
            channel.settings_to_json(self.settings),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=channel.MAX_LINE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        w = _Worker(index, proc, proc.stdout, proc.stdin)
        loop = asyncio.get_running_loop()
        w.task = loop.create_task(self._read_loop(w))
        w.events_task = loop.create_task(self._event_loop(w))
        try:
            await asyncio.wait_for(w.ready.wait(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"media worker {index} did not start") from None
        return w

    # -- MediaBackend --------------------------------------------------------------------

    async def open_peer(self, room_id: str, participant_id: str, events: PeerEvents) -> None:
        """Place the room (least-loaded live worker) and create the participant's peer there."""
        self._check_open()
        w = self._room_worker.get(room_id)
        if w is None or not w.alive:
            w = await self._least_loaded()
            self._room_worker[room_id] = w
        w.rooms.setdefault(room_id, set()).add(participant_id)
        self._events[(room_id, participant_id)] = events
        await self._call(w, "open_peer", room_id=room_id, participant_id=participant_id)

    async def _least_loaded(self) -> _Worker:
        # While every worker is being replaced, a join waits for the first one back.
        live = [x for x in self._workers if x.alive]
        if not live:
            self._worker_up.clear()
            try:
                await asyncio.wait_for(self._worker_up.wait(), START_TIMEOUT_S)
            except TimeoutError:
                raise Conflict("no media worker is available", code="media_unavailable") from None
            live = [x for x in self._workers if x.alive]
            if not live:
                raise Conflict("no media worker is available", code="media_unavailable")
        return min(live, key=lambda x: x.load)

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        w = self._worker_of(room_id)
        return str(
            await self._call(
                w, "publish", room_id=room_id, participant_id=participant_id, sdp=offer_sdp
            )
        )

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        w = self._worker_of(room_id)
        await self._call(
            w, "answer", room_id=room_id, participant_id=participant_id, sdp=answer_sdp
        )

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        w = self._worker_of(room_id)
        await self._call(
            w,
            "add_candidate",
            room_id=room_id,
            participant_id=participant_id,
            candidate=candidate,
            sdp_mid=sdp_mid,
            index=sdp_mline_index,
        )

    async def close_peer(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; idempotent, and a no-op on a dead worker."""
        self._events.pop((room_id, participant_id), None)
        w = self._room_worker.get(room_id)
        if w is None:
            return
        people = w.rooms.get(room_id, set())
        people.discard(participant_id)
        if not people:
            w.rooms.pop(room_id, None)
            self._room_worker.pop(room_id, None)
        if w.alive:
            await self._call(w, "close_peer", room_id=room_id, participant_id=participant_id)

    async def close_room(self, room_id: str) -> None:
        w = self._room_worker.pop(room_id, None)
        if w is None:
            return
        for pid in w.rooms.pop(room_id, set()):
            self._events.pop((room_id, pid), None)
        if w.alive:
            await self._call(w, "close_room", room_id=room_id)

    async def srtp_profile(self, room_id: str, participant_id: str) -> str | None:
        w = self._worker_of(room_id)
        result = await self._call(w, "srtp_profile", room_id=room_id, participant_id=participant_id)
        return None if result is None else str(result)

    # -- channel -------------------------------------------------------------------------

    async def _call(self, w: _Worker, op: str, **args: Any) -> Any:
        if not w.alive:
            raise Conflict("the media worker of this room died", code="media_unavailable")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        w.pending[rid] = future
        w.writer.write(channel.encode({"id": rid, "op": op, "args": args}))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            w.pending.pop(rid, None)

    async def _read_loop(self, w: _Worker) -> None:
        try:
            while True:
                message = await channel.read(w.reader)
                if message is None:
                    break
                if "event" in message:
                    # Handled by another task, in order: a handler may call back into this
                    # worker (media_failed → close_peer), whose response this loop must read.
                    if message["event"] in ("ready", "stats"):
                        await self._on_event(w, message)
                    else:
                        w.events.put_nowait(message)
                    continue
                future = w.pending.get(int(message.get("id", -1)))
                if future is None or future.done():
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(channel.error_from_wire(message.get("error") or {}))
        except (ConnectionError, ValueError):
            log.exception("media worker %d sent garbage", w.index)
        finally:
            await self._on_death(w)

    async def _event_loop(self, w: _Worker) -> None:
        while True:
            message = await w.events.get()
            try:
                await self._on_event(w, message)
            except Exception:
                log.exception("handling media worker event %s failed", message.get("event"))

    async def _on_event(self, w: _Worker, message: dict[str, Any]) -> None:
        kind = message["event"]
        if kind == "ready":
            w.ready.set()
            return
        if kind == "stats":
            w.snapshot = message["snapshot"]
            return
        pid = message.get("participant_id", "")
        room = next((r for r, people in w.rooms.items() if pid in people), None)
        events = self._events.get((room or "", pid))
        if events is None:
            return
        if kind == "offer":
            await events.send_offer(pid, message["sdp"])
        elif kind == "connected":
            await events.media_connected(pid)
        elif kind == "failed":
            await events.media_failed(pid, message.get("reason", "failed"))

    async def _on_death(self, w: _Worker) -> None:
        if not w.alive:
            return
        w.alive = False
        for future in w.pending.values():
            if not future.done():
                future.set_exception(
                    Conflict("the media worker of this room died", code="media_unavailable")
                )
        with contextlib.suppress(ProcessLookupError):
            w.proc.kill()
        await w.proc.wait()
        if w.snapshot is not None:
            self._dead_snapshots.append({**w.snapshot, "peers_by_state": {}, "rooms": 0, "legs": 0})
        if self._closed:
            return
        log.error("media worker %d (pid %s) died", w.index, w.proc.pid)
        victims = [(room, pid) for room, people in w.rooms.items() for pid in people]
        for room in list(w.rooms):
            self._room_worker.pop(room, None)
        w.rooms.clear()
        for room, pid in victims:
            events = self._events.pop((room, pid), None)
            if events is not None:
                await events.media_failed(pid, "worker_died")
        if w.events_task is not None:
            w.events_task.cancel()
        if self.restarts < MAX_RESTARTS:
            self.restarts += 1
            replacement = await self._spawn(w.index)
            self._workers[self._workers.index(w)] = replacement
            self._worker_up.set()

    def _worker_of(self, room_id: str) -> _Worker:
        self._check_open()
        w = self._room_worker.get(room_id)
        if w is None:
            raise Conflict("no media worker holds this room", code="no_peer")
        return w

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("media worker pool is closed")

    # -- observability and lifecycle -----------------------------------------------------

    async def refresh(self) -> None:
        """Fetch a fresh snapshot from every live worker (called before /metrics renders, so a
        scrape is exact rather than up to one push interval old)."""

        async def one(w: _Worker) -> None:
            with contextlib.suppress(Exception):
                w.snapshot = await asyncio.wait_for(self._call(w, "snapshot"), 2.0)

        await asyncio.gather(*(one(w) for w in self._workers if w.alive))

    def worker_pids(self) -> list[int]:
        """PIDs of the live workers (for operators and tests)."""
        return [w.proc.pid for w in self._workers if w.alive]

    def samples(self) -> Iterator[Sample]:
        """Media metrics summed over every worker (dead workers keep their counter totals)."""
        snaps = [w.snapshot for w in self._workers if w.snapshot is not None and w.alive]
        yield from samples_from_snapshots(snaps + self._dead_snapshots)
        yield Sample(
            "fortrolig_media_workers",
            "Live media worker processes",
            "gauge",
            sum(1 for w in self._workers if w.alive),
        )
        yield Sample(
            "fortrolig_media_worker_restarts_total",
            "Media workers restarted after dying",
            "counter",
            self.restarts,
        )

    async def close(self) -> None:
        """Stop every worker (shutdown request, then kill after 5 s); idempotent."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w.alive:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    w.writer.write(channel.encode({"op": "shutdown"}))
        for w in self._workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            for task in (w.task, w.events_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

"""Media worker processes controlled by the signaling process (one per core).

:class:`WorkerPool` is a :class:`~fortrolig.media.backend.MediaBackend`, like the in-process
:class:`~fortrolig.media.sfu.Sfu`, so signaling cannot tell them apart. Rooms are placed by
:mod:`fortrolig.media.placement` (least-loaded live worker, and they stay there); each worker is a
:class:`~fortrolig.media.worker_process.WorkerProcess` talking the typed messages of
:mod:`fortrolig.media.worker_schema`. A worker that dies is detected at once (its pipe closes);
every participant it carried is told ``media_failed`` (reason ``worker_died``) so the client
reconnects and lands on a live worker, and a replacement worker is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from fortrolig.core.errors import Conflict, NotFound
from fortrolig.core.metrics import Sample

from . import worker_schema as schema
from .backend import PeerEvents
from .placement import Placement
from .settings import MediaSettings
from .sfu import samples_from_snapshots
from .subscriber import RecordedPart
from .worker_process import MEDIA_WORKER_MODULE, START_TIMEOUT_S, WorkerProcess

log = logging.getLogger(__name__)

MAX_RESTARTS = 20  # per pool lifetime: a worker that keeps dying is a bug to look at, not loop on
REFRESH_TIMEOUT_S = 2.0


class WorkerPool:
    """N media worker processes behind the MediaBackend interface."""

    def __init__(
        self, settings: MediaSettings, workers: int, module: str = MEDIA_WORKER_MODULE
    ) -> None:
        """``module`` is the workers' entry point (``fortrolig.recording.worker`` records)."""
        if workers < 1:
            raise ValueError("at least one media worker")
        self.settings = settings
        self.module = module
        self.size = workers
        self.restarts = 0
        self.placement: Placement[WorkerProcess] = Placement()
        self._workers: list[WorkerProcess] = []
        self._events: dict[tuple[str, str], PeerEvents] = {}
        self._closed = False
        self._dead_snapshots: list[dict[str, Any]] = []
        self._worker_up = asyncio.Event()

    async def start(self) -> None:
        """Start every worker and wait until each says ready."""
        for i in range(self.size):
            self._workers.append(await self._spawn(i))
        self._worker_up.set()

    async def _spawn(self, index: int) -> WorkerProcess:
        return await WorkerProcess.spawn(
            index, self.settings, self._on_event, self._on_exit, self.module
        )

    # -- MediaBackend --------------------------------------------------------------------

    async def open_peer(self, room_id: str, participant_id: str, events: PeerEvents) -> None:
        """Place the room (least-loaded live worker) and create the participant's peer there."""
        self._check_open()
        w = self.placement.worker_of(room_id)
        if w is None or not w.alive:
            w = await self._least_loaded()
        self.placement.add(room_id, participant_id, w)
        self._events[(room_id, participant_id)] = events
        await self._call(w, schema.OpenPeer(room_id, participant_id), schema.Done)

    async def _least_loaded(self) -> WorkerProcess:
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
        return self.placement.least_loaded(live)

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Apply the participant's publishing offer on its room's worker; returns the answer."""
        w = self._worker_of(room_id)
        request = schema.Publish(room_id, participant_id, offer_sdp)
        return (await self._call(w, request, schema.Published)).sdp

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply the participant's answer to the worker's renegotiation offer."""
        w = self._worker_of(room_id)
        await self._call(w, schema.Answer(room_id, participant_id, answer_sdp), schema.Done)

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate from the participant, passed to its room's worker."""
        w = self._worker_of(room_id)
        request = schema.AddCandidate(room_id, participant_id, candidate, sdp_mid, sdp_mline_index)
        await self._call(w, request, schema.Done)

    async def close_peer(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; idempotent, and a no-op on a dead worker."""
        self._events.pop((room_id, participant_id), None)
        w = self.placement.remove(room_id, participant_id)
        if w is not None and w.alive:
            await self._call(w, schema.ClosePeer(room_id, participant_id), schema.Done)

    async def close_room(self, room_id: str) -> None:
        """Close every peer of the room; idempotent."""
        placed = self.placement.remove_room(room_id)
        if placed is None:
            return
        w, people = placed
        for pid in people:
            self._events.pop((room_id, pid), None)
        if w.alive:
            await self._call(w, schema.CloseRoom(room_id), schema.Done)

    async def srtp_profile(self, room_id: str, participant_id: str) -> str | None:
        """The SRTP profile negotiated with a participant (None until connected)."""
        w = self._worker_of(room_id)
        request = schema.GetSrtpProfile(room_id, participant_id)
        return (await self._call(w, request, schema.SrtpProfile)).profile

    async def start_recording(
        self, room_id: str, recording_id: str, key: bytes, participants: tuple[str, ...]
    ) -> None:
        """Record on the room's worker (the key crosses only the worker's pipe)."""
        w = self._worker_of(room_id)
        request = schema.StartRecording(room_id, recording_id, key.hex(), participants)
        await self._call(w, request, schema.Done)

    async def include_in_recording(
        self, room_id: str, recording_id: str, participant_id: str
    ) -> None:
        """A participant consented to the running recording."""
        w = self._worker_of(room_id)
        request = schema.IncludeInRecording(room_id, recording_id, participant_id)
        await self._call(w, request, schema.Done)

    async def stop_recording(self, room_id: str, recording_id: str) -> tuple[RecordedPart, ...]:
        """Finish the recording on the room's worker; returns its files."""
        w = self._worker_of(room_id)
        request = schema.StopRecording(room_id, recording_id)
        return (await self._call(w, request, schema.RecordingStopped)).parts

    async def _call(
        self, w: WorkerProcess, request: schema.Request, cls: type[schema.R]
    ) -> schema.R:
        return schema.expect(await w.call(request), cls)

    def _worker_of(self, room_id: str) -> WorkerProcess:
        self._check_open()
        w = self.placement.worker_of(room_id)
        if w is None:
            raise NotFound("no media peer for this participant", code="no_peer")
        return w

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("media worker pool is closed")

    # -- what workers tell -----------------------------------------------------------------

    async def _on_event(self, w: WorkerProcess, event: schema.Event) -> None:
        if not isinstance(event, schema.Offer | schema.Connected | schema.PeerFailed):
            return  # ready and stats are the worker process's own business
        pid = event.participant_id
        room = self.placement.room_of(w, pid)
        events = self._events.get((room or "", pid))
        if events is None:
            return
        if isinstance(event, schema.Offer):
            await events.send_offer(pid, event.sdp)
        elif isinstance(event, schema.Connected):
            await events.media_connected(pid)
        else:
            await events.media_failed(pid, event.reason)

    async def _on_exit(self, w: WorkerProcess) -> None:
        if w.snapshot is not None:
            self._dead_snapshots.append({**w.snapshot, "peers_by_state": {}, "rooms": 0, "legs": 0})
        if self._closed:
            return
        log.error("media worker %d (pid %s) died", w.index, w.pid)
        for room, pid in self.placement.evict(w):
            events = self._events.pop((room, pid), None)
            if events is not None:
                await events.media_failed(pid, "worker_died")
        w.stop_events()
        if self.restarts < MAX_RESTARTS:
            self.restarts += 1
            replacement = await self._spawn(w.index)
            self._workers[self._workers.index(w)] = replacement
            self._worker_up.set()

    # -- observability and lifecycle -----------------------------------------------------

    async def refresh(self) -> None:
        """Fetch a fresh snapshot from every live worker (called before /metrics renders, so a
        scrape is exact rather than up to one push interval old)."""

        async def one(w: WorkerProcess) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    response = await w.call(schema.GetSnapshot())
                w.snapshot = schema.expect(response, schema.Snapshot).snapshot

        await asyncio.gather(*(one(w) for w in self._workers if w.alive))

    def worker_pids(self) -> list[int]:
        """PIDs of the live workers (for operators and tests)."""
        return [w.pid for w in self._workers if w.alive]

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
            "fortrolig_media_worker_asyncio_tasks",
            "Live asyncio tasks summed over the live media workers (as of their last snapshot)",
            "gauge",
            sum(s.get("asyncio_tasks", 0) for s in snaps),
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
            w.request_shutdown()
        for w in self._workers:
            await w.wait_stopped()

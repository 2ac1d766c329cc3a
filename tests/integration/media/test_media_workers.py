"""Media worker processes: the pool forwards media, aggregates metrics, survives a dead worker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from fortrolig.core.errors import BadRequest, NotFound, ProtocolError
from fortrolig.loadtests.sources import FrameCounter, PatternVideoTrack, ToneAudioTrack
from fortrolig.media import worker_schema as schema
from fortrolig.media.backend import MediaBackend
from fortrolig.media.pool import WorkerPool
from fortrolig.media.settings import MediaSettings
from fortrolig.media.sfu import Sfu
from tests.conftest import Server


class Client:
    """A participant talking to the pool directly (what signaling does for a browser)."""

    def __init__(self, pool: WorkerPool, room: str, pid: str, colour: tuple[int, int, int]):
        self.pool, self.room, self.pid = pool, room, pid
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(PatternVideoTrack(*colour, 160, 120, 30), direction="sendonly")
        self.pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
        self.video: list[FrameCounter] = []
        self.failed: list[str] = []
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stable = asyncio.Event()

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            counter = FrameCounter(track.kind)
            if track.kind == "video":
                self.video.append(counter)
            self._tasks.append(asyncio.ensure_future(counter.consume(track)))

    # PeerEvents
    async def send_offer(self, participant_id: str, sdp: str) -> None:
        self._tasks.append(asyncio.ensure_future(self._answer(sdp)))

    async def _answer(self, sdp: str) -> None:
        await self._stable.wait()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.pool.answer(self.room, self.pid, self.pc.localDescription.sdp)

    async def media_connected(self, participant_id: str) -> None:
        self.connected.set()

    async def media_failed(self, participant_id: str, reason: str) -> None:
        self.failed.append(reason)

    async def start(self) -> None:
        await self.pool.open_peer(self.room, self.pid, self)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.pool.publish(self.room, self.pid, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        self._stable.set()

    def frames(self) -> int:
        return sum(c.frames for c in self.video)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()


async def until(cond: Callable[[], bool], limit: float) -> None:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < limit, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    p = WorkerPool(MediaSettings(ice_host_addresses=("127.0.0.1",)), workers=2)
    await p.start()
    yield p
    await p.close()
    for pid in p.worker_pids():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def metric(pool: WorkerPool, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in pool.samples()
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_rooms_spread_over_workers_and_forward_media(pool: WorkerPool) -> None:
    clients = [
        Client(pool, room, f"{room}-{i}", colour)
        for room in ("r1", "r2")
        for i, colour in enumerate([(82, 90, 240), (145, 54, 34)])
    ]
    try:
        for c in clients:
            await c.start()
        # Two rooms, two workers: one room each (least-loaded placement).
        assert len({id(pool.placement.worker_of(r)) for r in ("r1", "r2")}) == 2
        await until(lambda: all(c.frames() > 20 for c in clients), 20)
        await until(lambda: metric(pool, "fortrolig_media_peers", state="connected") == 4, 5)
        assert metric(pool, "fortrolig_media_forwarded_packets_total") > 0
        assert metric(pool, "fortrolig_media_codec_instances_total") == 0
        assert metric(pool, "fortrolig_media_workers") == 2
        assert await pool.srtp_profile("r1", "r1-0") == "SRTP_AEAD_AES_256_GCM"
    finally:
        for c in clients:
            await c.close()


async def test_a_dead_worker_is_detected_reported_and_replaced(pool: WorkerPool) -> None:
    a, b = Client(pool, "r1", "a", (82, 90, 240)), Client(pool, "r1", "b", (145, 54, 34))
    other = Client(pool, "r2", "c", (41, 240, 110))
    try:
        for c in (a, b, other):
            await c.start()
        await until(lambda: a.frames() > 10 and b.frames() > 10, 20)
        victim = pool.placement.worker_of("r1")
        assert victim is not None
        os.kill(victim.pid, signal.SIGKILL)
        await until(lambda: a.failed == ["worker_died"] and b.failed == ["worker_died"], 10)
        assert other.failed == []
        await until(lambda: metric(pool, "fortrolig_media_workers") == 2, 20)
        assert metric(pool, "fortrolig_media_worker_restarts_total") == 1
        # The participants rejoin: the room lands on a live worker and media flows again.
        await a.close()
        await b.close()
        a2, b2 = Client(pool, "r1", "a", (82, 90, 240)), Client(pool, "r1", "b", (145, 54, 34))
        try:
            await a2.start()
            await b2.start()
            await until(lambda: a2.frames() > 10 and b2.frames() > 10, 20)
        finally:
            await a2.close()
            await b2.close()
    finally:
        for c in (a, b, other):
            await c.close()


async def test_errors_cross_the_channel_typed(pool: WorkerPool) -> None:
    c = Client(pool, "r9", "x", (82, 90, 240))
    await pool.open_peer("r9", "x", c)
    with pytest.raises(BadRequest) as err:
        await pool.publish("r9", "x", "v=0 garbage")
    assert err.value.code == "bad_sdp"
    await pool.close_peer("r9", "x")
    await c.close()


async def test_sfu_and_pool_are_one_interface(pool: WorkerPool) -> None:
    """Lifecycle, metrics and errors are the same whichever backend the node has."""
    # forbid_transcoding=False: the codec guard is process-wide, and this test process's own
    # aiortc clients encode.
    sfu = Sfu(MediaSettings(ice_host_addresses=("127.0.0.1",), forbid_transcoding=False))
    backends: list[MediaBackend] = [sfu, pool]
    try:
        await sfu.start()  # (the pool fixture started the pool)
        for media in backends:
            await media.refresh()
            assert any(s.name == "fortrolig_media_peers" for s in media.samples())
            for call in (
                media.srtp_profile("nowhere", "x"),
                media.publish("nowhere", "x", "v=0"),
                media.answer("nowhere", "x", "v=0"),
            ):
                with pytest.raises(NotFound) as err:
                    await call
                assert err.value.code == "no_peer"
            await media.close_peer("nowhere", "x")  # idempotent: nothing to close
            await media.close_room("nowhere")
    finally:
        await sfu.close()


async def test_a_worker_answers_a_bad_request_with_its_typed_error_and_keeps_serving() -> None:
    """The worker process alone, driven over its pipes as WorkerProcess does."""
    settings = MediaSettings(ice_host_addresses=("127.0.0.1",))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fortrolig.media.worker",
        schema.dump_settings(settings),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def receive() -> schema.Reply | schema.Event:
        assert proc.stdout is not None
        while True:  # skip the stats pushed every second
            message = schema.parse_from_worker(await asyncio.wait_for(proc.stdout.readline(), 10))
            if not isinstance(message, schema.Stats):
                return message

    try:
        assert isinstance(await receive(), schema.Ready)
        proc.stdin.write(b'{"type": "publish", "id": 7, "room_id": 5}\n')
        proc.stdin.write(b"not json\n")  # no id: nobody to tell, and nothing changes
        proc.stdin.write(schema.dump(schema.Call(8, schema.GetSnapshot())).encode() + b"\n")
        bad, good = await receive(), await receive()
        assert isinstance(bad, schema.Reply) and bad.id == 7
        with pytest.raises(ProtocolError) as err:
            schema.expect(bad.response, schema.Done)
        assert err.value.code == "bad_field"
        assert isinstance(good, schema.Reply) and good.id == 8
        assert schema.expect(good.response, schema.Snapshot).snapshot["peers"] == 0
        proc.stdin.write(schema.dump(schema.Call(9, schema.Shutdown())).encode() + b"\n")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _worker_pids(server_pid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        # A node that records (the default) runs the recording worker's entry point.
        if ppid == server_pid and re.search(rb"fortrolig\.(media|recording)\.worker", cmd):
            pids.append(int(entry))
    return pids


async def test_node_survives_a_worker_death_and_participants_resume(server: Server) -> None:
    from fortrolig.loadtests.participant import Participant

    workers = _worker_pids(server.proc.pid)
    assert len(workers) == 2  # one per core on this 2-core machine (the default)
    session = server.session()
    tracks = lambda c: [PatternVideoTrack(*c, 160, 120, 30), ToneAudioTrack()]  # noqa: E731
    a = Participant(server.ws_url, session["practitioner_token"], tracks=tracks((82, 90, 240)))
    b = Participant(server.ws_url, session["client_token"], tracks=tracks((145, 54, 34)))
    resumed: list[Participant] = []
    try:
        await a.start()
        await b.start()
        await until(lambda: a.frames_from(b.participant_id or "", "video") > 10, 15)
        # Kill whichever worker holds the room: both participants are told, then resume.
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        for p in (a, b):
            err = await p.expect("error", within=10)
            assert err["code"] == "media_failed"
            assert (await p.expect("closed", within=5))["code"] == 4500
        await until(lambda: server.metric("fortrolig_media_workers") == 2, 30)
        assert len(_worker_pids(server.proc.pid)) == 2
        assert server.metric("fortrolig_media_worker_restarts_total") == 2
        for p, colour in ((a, (82, 90, 240)), (b, (145, 54, 34))):
            again = Participant(server.ws_url, p.resume_token or "", tracks=tracks(colour))
            resumed.append(again)
            await again.start()
        a2, b2 = resumed
        assert (a2.participant_id, b2.participant_id) == (a.participant_id, b.participant_id)
        await until(lambda: a2.frames_from(b2.participant_id or "", "video") > 10, 15)
        await until(lambda: b2.frames_from(a2.participant_id or "", "video") > 10, 15)
    finally:
        for p in (a, b, *resumed):
            await p.close()

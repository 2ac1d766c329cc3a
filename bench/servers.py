"""The two servers under test, each run alone in a process pinned to the server core.

* ``fortrolig``: :class:`fortrolig.media.sfu.Sfu` (RTP-level forwarding, no codec work), its
  media sockets read by the native I/O thread; ``fortrolig-inline`` the same with
  ``io_thread=False`` (read by the event loop).
* ``fortrolig-recorded``: ``fortrolig`` with a :class:`fortrolig.recording.recorder.Recorder`
  attached to the room from the start (a subscriber like any other), writing encrypted WebM
  parts to ``record_dir`` (a temporary directory, deleted at shutdown, when none is given); the
  CodecGuard is installed, so any decoder or encoder would fail and be counted.
* ``relay``: the stock aiortc way, one ``RTCPeerConnection`` per participant and
  ``aiortc.contrib.media.MediaRelay``: the publisher's tracks are decoded once and every
  subscriber's sender re-encodes them.

Both speak the same operations over :mod:`bench.wire` so that the client process is identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from .common import (
    LOOPBACK,
    SERVER_CORE,
    ice_host_only,
    pin_process,
    process_cpu_s,
    threads_run_by_name,
    threads_run_s,
    wait_until,
)
from .wire import LINE_LIMIT, Message, encode, read_messages

log = logging.getLogger(__name__)

ROOM = "bench"
MAX_LIFETIME_S = 900.0  # a server left alone by a crashed client ends by itself

Push = Callable[[Message], None]


class ServerImpl(Protocol):
    async def handle(self, op: str, msg: Message) -> Message: ...

    def counters(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


class FortroligServer:
    """Fortrolig's SFU behind the benchmark channel (it is also the SFU's PeerEvents)."""

    def __init__(
        self,
        push: Push,
        ice_address: str = LOOPBACK,
        io_thread: bool = True,
        record_dir: str | None = None,
    ) -> None:
        # Imported here so that the baseline's process never loads Fortrolig's media code.
        from fortrolig.media.settings import MediaSettings
        from fortrolig.media.sfu import Sfu

        self._push = push
        settings = MediaSettings(
            forbid_transcoding=record_dir is not None,
            ice_host_addresses=(ice_address,),
            io_thread=io_thread,
        )
        self.sfu = Sfu(settings)
        self.failures: list[str] = []
        self.recorder: Any = None
        self._record_key = b""
        if record_dir is not None:
            self._start_recorder(record_dir)

    def _start_recorder(self, record_dir: str) -> None:
        from pathlib import Path

        from fortrolig.recording.keys import new_recording_key
        from fortrolig.recording.recorder import DirectorySink, Recorder

        self._record_key = new_recording_key()
        sink = DirectorySink(Path(record_dir))
        self.recorder = Recorder("bench-recording", self._record_key, sink)
        self.sfu.attach_subscriber(ROOM, self.recorder)

    def _stop_recorder(self) -> Message:
        recorder = self.recorder
        if recorder is None:
            raise ValueError("no recorder")
        opened = recorder.codecs_opened()
        self.sfu.detach_subscriber(ROOM, recorder)
        parts = recorder.close()
        return {
            # The key goes back to the test or benchmark that asked for it, over this local
            # socket only; it is never written anywhere.
            "key": self._record_key.hex(),
            "parts": [
                {
                    "index": p.index,
                    "name": p.name,
                    "starts_at_s": p.starts_at_s,
                    "duration_s": p.duration_s,
                    "tracks": [[t.track_id, t.participant_id, t.kind] for t in p.tracks],
                    "frames": p.frames,
                }
                for p in parts
            ],
            "codecs_opened": opened,
            "codec_instances": self.sfu.snapshot()["codec_instances"],
            "lost_packets": recorder.lost_packets,
        }

    async def send_offer(self, participant_id: str, sdp: str) -> None:
        self._push({"ev": "offer", "pid": participant_id, "sdp": sdp})

    async def media_connected(self, participant_id: str) -> None:
        return None

    async def media_failed(self, participant_id: str, reason: str) -> None:
        self.failures.append(f"{participant_id}: {reason}")
        self._push({"ev": "failed", "pid": participant_id, "reason": reason})

    async def handle(self, op: str, msg: Message) -> Message:
        pid = str(msg.get("pid", ""))
        if op == "open_peer":
            await self.sfu.open_peer(ROOM, pid, self)
            return {}
        if op == "publish":
            return {"sdp": await self.sfu.publish(ROOM, pid, str(msg["sdp"]))}
        if op == "answer":
            await self.sfu.answer(ROOM, pid, str(msg["sdp"]))
            return {}
        if op == "srtp":
            return {"profile": await self.sfu.srtp_profile(ROOM, pid)}
        if op == "record_stop":
            return self._stop_recorder()
        if op == "codec_instances":
            return {"codec_instances": self.sfu.snapshot()["codec_instances"]}
        raise ValueError(f"unknown op {op}")

    def counters(self) -> dict[str, int]:
        return self.sfu.counters.as_dict()

    async def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        await self.sfu.close()


class RelayServer:
    """The baseline: aiortc peer connections joined by a stock MediaRelay."""

    def __init__(self, push: Push) -> None:
        self._push = push
        self.relay = MediaRelay()
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._tracks: dict[str, list[MediaStreamTrack]] = {}
        self._published: list[str] = []
        self._offering: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures: list[str] = []

    async def handle(self, op: str, msg: Message) -> Message:
        pid = str(msg.get("pid", ""))
        if op == "open_peer":
            await self._open(pid)
            return {}
        if op == "publish":
            return {"sdp": await self._publish(pid, str(msg["sdp"]))}
        if op == "answer":
            await self._pcs[pid].setRemoteDescription(
                RTCSessionDescription(str(msg["sdp"]), "answer")
            )
            return {}
        if op == "srtp":
            return {"profile": None}
        raise ValueError(f"unknown op {op}")

    async def _open(self, pid: str) -> None:
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        pc = RTCPeerConnection(configuration=config)
        self._pcs[pid] = pc
        self._tracks[pid] = []
        self._offering[pid] = asyncio.Lock()
        pc.on("track", lambda track: self._tracks[pid].append(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                self.failures.append(f"{pid}: failed")

    async def _publish(self, pid: str, sdp: str) -> str:
        pc = self._pcs[pid]
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = str(pc.localDescription.sdp)
        for other in self._published:
            if self._tracks[other]:
                self._forward(other, pid)
            if self._tracks[pid]:
                self._forward(pid, other)
        self._published.append(pid)
        return answer

    def _forward(self, source: str, target: str) -> None:
        """Add relayed copies of ``source``'s tracks to ``target`` and renegotiate it."""
        pc = self._pcs[target]
        for track in self._tracks[source]:
            pc.addTransceiver(self.relay.subscribe(track), direction="sendonly")
        task = asyncio.get_running_loop().create_task(self._offer(target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _offer(self, pid: str) -> None:
        pc = self._pcs[pid]
        async with self._offering[pid]:
            if not await wait_until(lambda: pc.signalingState == "stable", 10.0):
                self.failures.append(f"{pid}: renegotiation never became possible")
                return
            await pc.setLocalDescription(await pc.createOffer())
            self._push({"ev": "offer", "pid": pid, "sdp": str(pc.localDescription.sdp)})

    def counters(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for pc in self._pcs.values():
            await pc.close()
        self._pcs.clear()


def server_main(
    kind: str,
    socket_path: str,
    conn: Connection,
    ice_address: str = LOOPBACK,
    record_dir: str | None = None,
) -> None:
    """Process entry point: pin to the server core, serve until told to shut down.

    ``ice_address`` is the only ICE host address offered (bench.janus_bench runs the server
    inside its own network namespace, on a veth address). ``record_dir``: where the
    ``fortrolig-recorded`` kind writes (a temporary directory when None).
    """
    pin_process(SERVER_CORE)
    ice_host_only(ice_address)
    logging.basicConfig(level=logging.WARNING)
    if kind == "fortrolig-recorded" and record_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
            asyncio.run(_serve(kind, socket_path, conn, ice_address, tmp))
    else:
        asyncio.run(_serve(kind, socket_path, conn, ice_address, record_dir))


async def _serve(
    kind: str,
    socket_path: str,
    conn: Connection,
    ice_address: str = LOOPBACK,
    record_dir: str | None = None,
) -> None:
    stop = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    def push(message: Message) -> None:
        for writer in writers:
            if not writer.is_closing():
                writer.write(encode(message))

    impl: ServerImpl
    if kind == "fortrolig":
        impl = FortroligServer(push, ice_address)
    elif kind == "fortrolig-recorded":
        impl = FortroligServer(push, ice_address, record_dir=record_dir)
    elif kind == "fortrolig-inline":  # media.io_thread = false: sockets read by the event loop
        impl = FortroligServer(push, ice_address, io_thread=False)
    elif kind == "relay":
        impl = RelayServer(push)
    else:
        raise ValueError(f"unknown server kind {kind}")
    tasks: set[asyncio.Task[None]] = set()

    async def answer(message: Message, writer: asyncio.StreamWriter) -> None:
        op = str(message.get("op"))
        reply: dict[str, Any] = {"id": message.get("id")}
        try:
            if op == "cpu":
                reply["result"] = {
                    "cpu_s": process_cpu_s(),
                    "sched_s": threads_run_s(),
                    "threads": threads_run_by_name(),
                    "wall": time.perf_counter(),
                    "counters": impl.counters(),
                    "failures": list(getattr(impl, "failures", [])),
                }
            elif op == "shutdown":
                await impl.close()
                stop.set()
                reply["result"] = {}
            else:
                reply["result"] = await impl.handle(op, message)
            reply["ok"] = True
        except Exception as exc:
            log.exception("op %s failed", op)
            reply["ok"] = False
            reply["error"] = f"{type(exc).__name__}: {exc}"
        if not writer.is_closing():
            writer.write(encode(reply))

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        async for message in read_messages(reader):
            task = asyncio.get_running_loop().create_task(answer(message, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        writers.remove(writer)

    server = await asyncio.start_unix_server(on_connection, socket_path, limit=LINE_LIMIT)
    conn.send(("ready", os.getpid()))
    try:
        await asyncio.wait_for(stop.wait(), MAX_LIFETIME_S)
    except TimeoutError:
        log.warning("server lifetime exceeded; closing")
        await impl.close()
    finally:
        await asyncio.sleep(0.05)  # let the shutdown reply leave
        for writer in writers:
            writer.close()
        server.close()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)

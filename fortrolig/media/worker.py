"""A media worker process: one Sfu owning whole rooms, driven over stdin/stdout.

Started by :class:`fortrolig.media.worker_process.WorkerProcess` as
``python -m fortrolig.media.worker SETTINGS_JSON``. Python does one thread of real work per
process, so a node runs one worker per core (as mediasoup does); each room lives entirely in one
worker, so forwarding never crosses a process boundary. Logs go to stderr; stdout carries only
the channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

from fortrolig.core.errors import BadRequest, ProtocolError

from . import worker_schema as schema
from .channel import MAX_LINE, LineWriter, read_line, write
from .settings import MediaSettings
from .sfu import Sfu
from .subscriber import RecorderFactory

RecordersFor = Callable[[MediaSettings], RecorderFactory | None]
"""Builds the worker's recorder factory from its settings (None: this worker cannot record)."""


log = logging.getLogger("fortrolig.media.worker")
STATS_INTERVAL_S = 1.0


def _key(text: str) -> bytes:
    """The recording key from its hex form (its length is the SFU's check)."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadRequest("a recording key is 64 hex digits", code="bad_field") from None


class _Events:
    """PeerEvents that push over the channel."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    async def send_offer(self, participant_id: str, sdp: str) -> None:
        write(self._writer, schema.Offer(participant_id, sdp))

    async def media_connected(self, participant_id: str) -> None:
        write(self._writer, schema.Connected(participant_id))

    async def media_failed(self, participant_id: str, reason: str) -> None:
        write(self._writer, schema.PeerFailed(participant_id, reason))


class Worker:
    """Serves channel requests with one Sfu."""

    def __init__(self, sfu: Sfu, writer: LineWriter) -> None:
        self.sfu = sfu
        self._writer = writer
        self._events = _Events(writer)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, message: schema.Reply | schema.Event) -> None:
        """Write one reply or event to the signaling process."""
        write(self._writer, message)

    async def handle(self, call: schema.Call) -> None:
        """Run one request and reply: its result, or the error it raised (typed)."""
        response: schema.Response
        try:
            response = await self._dispatch(call.request)
        except Exception as exc:
            if not hasattr(exc, "code"):
                log.exception("media worker request %s failed", call.request.type)
            response = schema.Failed.from_exception(exc)
        self.send(schema.Reply(call.id, response))

    async def _dispatch(self, request: schema.Request) -> schema.Response:
        sfu = self.sfu
        match request:
            case schema.OpenPeer(room, pid):
                await sfu.open_peer(room, pid, self._events)
            case schema.Publish(room, pid, sdp):
                return schema.Published(await sfu.publish(room, pid, sdp))
            case schema.Answer(room, pid, sdp):
                await sfu.answer(room, pid, sdp)
            case schema.AddCandidate(room, pid, candidate, mid, index):
                await sfu.add_candidate(room, pid, candidate, mid, index)
            case schema.ClosePeer(room, pid):
                await sfu.close_peer(room, pid)
            case schema.CloseRoom(room):
                await sfu.close_room(room)
            case schema.GetSrtpProfile(room, pid):
                return schema.SrtpProfile(await sfu.srtp_profile(room, pid))
            case schema.StartRecording(room, rid, key, participants):
                await sfu.start_recording(room, rid, _key(key), participants)
            case schema.IncludeInRecording(room, rid, pid):
                await sfu.include_in_recording(room, rid, pid)
            case schema.StopRecording(room, rid):
                return schema.RecordingStopped(await sfu.stop_recording(room, rid))
            case schema.GetSnapshot():
                # The worker's own live tasks: the signaling process cannot count them.
                return schema.Snapshot(
                    {**sfu.snapshot(), "asyncio_tasks": len(asyncio.all_tasks())}
                )
            case schema.Shutdown():  # the read loop stops on it; never dispatched
                raise ProtocolError("shutdown is not a call", code="bad_type")
        return schema.Done()

    def refuse(self, line: bytes, error: ProtocolError) -> None:
        """Answer a request that does not parse with its typed error (it changes nothing)."""
        log.error("bad media channel request: %s", error.message)
        rid = schema.call_id(line)
        if rid is not None:  # without an id nobody can be told; that call times out
            self.send(schema.Reply(rid, schema.Failed.from_exception(error)))

    def spawn(self, call: schema.Call) -> None:
        """Handle ``call`` in its own task."""
        # Requests run concurrently (one participant's slow negotiation must not hold up
        # another's); each participant's own requests are already serialized by signaling.
        task = asyncio.get_running_loop().create_task(self.handle(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push_stats(self) -> None:
        """Send the SFU's snapshot every second (what /metrics shows between refreshes)."""
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.send(schema.Stats(self.sfu.snapshot()))


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def serve(settings_json: str, recorders_for: RecordersFor | None = None) -> None:
    """Run until the signaling process closes the channel or says shutdown.

    ``recorders_for`` comes from the entry point that records (``fortrolig.recording.worker``):
    media itself knows no recorder.
    """
    settings = schema.parse_settings(settings_json)
    sfu = Sfu(settings, recorders_for(settings) if recorders_for is not None else None)
    reader, writer = await _stdio()
    worker = Worker(sfu, writer)
    stats = asyncio.get_running_loop().create_task(worker.push_stats())
    worker.send(schema.Ready(os.getpid()))
    try:
        while True:
            line = await read_line(reader)
            if line is None:
                break
            try:
                call = schema.parse_call(line)
            except ProtocolError as exc:
                worker.refuse(line, exc)
                continue
            if isinstance(call.request, schema.Shutdown):
                break
            worker.spawn(call)
    finally:
        stats.cancel()
        await sfu.close()


def main(recorders_for: RecordersFor | None = None) -> None:
    """Entry point of ``python -m fortrolig.media.worker`` (and of the recording worker)."""
    logging.basicConfig(
        level=os.environ.get("FORTROLIG_WORKER_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(serve(sys.argv[1], recorders_for))


if __name__ == "__main__":
    main()

"""A media worker process: one Sfu owning whole rooms, driven over stdin/stdout.

Started by :class:`fortrolig.media.pool.WorkerPool` as ``python -m fortrolig.media.worker
SETTINGS_JSON``. Python does one thread of real work per process, so a node runs one worker per
core (as mediasoup does); each room lives entirely in one worker, so forwarding never crosses a
process boundary. Logs go to stderr; stdout carries only the channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from . import channel
from .sfu import Sfu

log = logging.getLogger("fortrolig.media.worker")
STATS_INTERVAL_S = 1.0


class _Events:
    """PeerEvents that push over the channel."""

    def __init__(self, send: Any) -> None:
        self._send = send

    async def send_offer(self, participant_id: str, sdp: str) -> None:
        self._send({"event": "offer", "participant_id": participant_id, "sdp": sdp})

    async def media_connected(self, participant_id: str) -> None:
        self._send({"event": "connected", "participant_id": participant_id})

    async def media_failed(self, participant_id: str, reason: str) -> None:
        self._send({"event": "failed", "participant_id": participant_id, "reason": reason})


class Worker:
    """Serves channel requests with one Sfu."""

    def __init__(self, sfu: Sfu, writer: asyncio.StreamWriter | Any) -> None:
        self.sfu = sfu
        self._writer = writer
        self._events = _Events(self.send)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(channel.encode(message))

    async def handle(self, request: dict[str, Any]) -> None:
        rid, op, args = request.get("id"), request.get("op"), request.get("args") or {}
        try:
            result = await self._dispatch(str(op), args)
            self.send({"id": rid, "ok": True, "result": result})
        except Exception as exc:
            if not hasattr(exc, "code"):
                log.exception("media worker request %s failed", op)
            self.send({"id": rid, "ok": False, "error": channel.error_to_wire(exc)})

    async def _dispatch(self, op: str, a: dict[str, Any]) -> Any:
        sfu = self.sfu
        if op == "open_peer":
            return await sfu.open_peer(a["room_id"], a["participant_id"], self._events)
        if op == "publish":
            return await sfu.publish(a["room_id"], a["participant_id"], a["sdp"])
        if op == "answer":
            return await sfu.answer(a["room_id"], a["participant_id"], a["sdp"])
        if op == "add_candidate":
            return await sfu.add_candidate(
                a["room_id"], a["participant_id"], a["candidate"], a["sdp_mid"], a["index"]
            )
        if op == "close_peer":
            return await sfu.close_peer(a["room_id"], a["participant_id"])
        if op == "close_room":
            return await sfu.close_room(a["room_id"])
        if op == "srtp_profile":
            return sfu.srtp_profile(a["room_id"], a["participant_id"])
        if op == "snapshot":
            return sfu.snapshot()
        raise ValueError(f"unknown op {op!r}")

    def spawn(self, request: dict[str, Any]) -> None:
        # Requests run concurrently (one participant's slow negotiation must not hold up
        # another's); each participant's own requests are already serialized by signaling.
        task = asyncio.get_running_loop().create_task(self.handle(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self.send({"event": "stats", "snapshot": self.sfu.snapshot()})


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=channel.MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def serve(settings_json: str) -> None:
    """Run until the signaling process closes the channel or says shutdown."""
    sfu = Sfu(channel.settings_from_json(settings_json))
    reader, writer = await _stdio()
    worker = Worker(sfu, writer)
    stats = asyncio.get_running_loop().create_task(worker.push_stats())
    worker.send({"event": "ready", "pid": os.getpid()})
    try:
        while True:
            request = await channel.read(reader)
            if request is None or request.get("op") == "shutdown":
                break
            worker.spawn(request)
    finally:
        stats.cancel()
        await sfu.close()


def main() -> None:
    """Entry point of ``python -m fortrolig.media.worker``."""
    logging.basicConfig(
        level=os.environ.get("FORTROLIG_WORKER_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()

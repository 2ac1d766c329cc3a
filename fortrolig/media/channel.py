"""The request/response channel between the signaling process and a media worker.

One message of :mod:`fortrolig.media.worker_schema` per line over the worker's stdin/stdout.
This module holds the framing (:func:`write`, :func:`read_line`) both sides use and the signaling
side's half, :class:`Channel`: it numbers calls, waits for their replies and raises the typed
error a :class:`~fortrolig.media.worker_schema.Failed` reply carries.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Protocol

from fortrolig.core.errors import Conflict, FortroligError

from . import worker_schema as schema

MAX_LINE = 1 << 20  # an SDP is < 64 KiB; anything near 1 MiB is a bug, not a message
REQUEST_TIMEOUT_S = 30.0


class LineWriter(Protocol):
    """Where one side writes its lines (an asyncio.StreamWriter)."""

    def write(self, data: bytes) -> None: ...


def write(writer: LineWriter, message: schema.Call | schema.Reply | schema.Event) -> None:
    """Send one message as one line."""
    writer.write(schema.dump(message).encode() + b"\n")


async def read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line, or None when the other side closed the channel."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise ConnectionError("media channel line too long") from exc
    return line or None


def worker_died() -> FortroligError:
    """What a call to a worker that died raises (a new join lands on a live worker)."""
    return Conflict("the media worker of this room died", code="media_unavailable")


class Channel:
    """The signaling side of one worker's channel: calls out, replies matched by id."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[schema.Response]] = {}
        self._broken: FortroligError | None = None

    async def call(self, request: schema.Request) -> schema.Response:
        """Send ``request`` and wait (30 s) for its response (a :class:`Failed` one is returned)."""
        if self._broken is not None:
            raise self._broken
        rid = next(self._ids)
        future: asyncio.Future[schema.Response] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        write(self._writer, schema.Call(rid, request))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._pending.pop(rid, None)

    def send(self, request: schema.Request) -> None:
        """Send a request whose reply nobody waits for (shutdown)."""
        write(self._writer, schema.Call(next(self._ids), request))

    def deliver(self, reply: schema.Reply) -> None:
        """Complete the call ``reply`` answers (late replies of timed-out calls are dropped)."""
        future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply.response)

    def fail(self, error: FortroligError) -> None:
        """The worker is gone: every waiting call and every later one raises ``error``."""
        self._broken = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

"""JSON-lines request/response (plus server-pushed events) over a Unix socket.

The benchmark's client process drives a server process through this channel: the same few
operations (open_peer, publish, answer, cpu, shutdown) for every server kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

Message = dict[str, Any]
LINE_LIMIT = 1 << 20


def encode(message: Message) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def read_messages(reader: asyncio.StreamReader) -> AsyncIterator[Message]:
    """Messages until EOF."""
    while True:
        line = await reader.readline()
        if not line:
            return
        yield json.loads(line)


class RpcClient:
    """Calls operations on the server; events it pushes go to ``on_event``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[Message], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, path: str, on_event: Callable[[Message], None]) -> RpcClient:
        reader, writer = await asyncio.open_unix_connection(path, limit=LINE_LIMIT)
        return cls(reader, writer, on_event)

    async def call(self, op: str, limit_s: float = 30.0, **args: Any) -> Message:
        """Send ``op`` and wait for its result; raises RuntimeError if the server failed."""
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(encode({"id": request_id, "op": op, **args}))
        try:
            reply = await asyncio.wait_for(future, limit_s)
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            raise RuntimeError(f"server refused {op}: {reply.get('error')}")
        result: Message = reply.get("result", {})
        return result

    async def _read(self) -> None:
        async for message in read_messages(self._reader):
            request_id = message.get("id")
            if request_id is None:
                self._on_event(message)
                continue
            future = self._pending.get(request_id)
            if future is not None and not future.done():
                future.set_result(message)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("server closed the channel"))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

"""One media worker process as the signaling process supervises it: started, read, stopped.

A :class:`WorkerProcess` runs ``python -m fortrolig.media.worker``, reads everything the worker
writes (replies go to its :class:`~fortrolig.media.channel.Channel`, events to the owner's
handler) and notices at once when the worker dies: its stdout closes. What happens then (who is
told, whether a replacement starts) is the owner's decision, made in its exit handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from fortrolig.core.errors import ProtocolError

from . import worker_schema as schema
from .channel import MAX_LINE, Channel, read_line, worker_died
from .settings import MediaSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
MEDIA_WORKER_MODULE = "fortrolig.media.worker"
"""The workers' entry point (a node that records runs ``fortrolig.recording.worker``)."""
STOP_TIMEOUT_S = 5.0

EventHandler = Callable[["WorkerProcess", schema.Event], Awaitable[None]]
ExitHandler = Callable[["WorkerProcess"], Awaitable[None]]


def _worker_env() -> dict[str, str]:
    """The node's environment plus its log level, so that a worker logs (to the node's stderr)
    what the node would: ``server.log_level`` is one setting for both."""
    level = logging.getLevelName(logging.getLogger("fortrolig").getEffectiveLevel())
    return {**os.environ, "FORTROLIG_WORKER_LOG_LEVEL": str(level)}


class WorkerProcess:
    """A running media worker: its process, its channel and its latest stats snapshot."""

    def __init__(
        self,
        index: int,
        proc: asyncio.subprocess.Process,
        on_event: EventHandler,
        on_exit: ExitHandler,
    ) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.index = index
        self.proc = proc
        self.channel = Channel(proc.stdin)
        self.snapshot: dict[str, Any] | None = None
        self.alive = True
        self._stdout = proc.stdout
        self._on_event = on_event
        self._on_exit = on_exit
        self._events: asyncio.Queue[schema.Event] = asyncio.Queue()
        self._ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._read_task = loop.create_task(self._read_loop())
        self._event_task = loop.create_task(self._event_loop())

    @classmethod
    async def spawn(
        cls,
        index: int,
        settings: MediaSettings,
        on_event: EventHandler,
        on_exit: ExitHandler,
        module: str = MEDIA_WORKER_MODULE,
    ) -> WorkerProcess:
        """Start worker ``index`` (``python -m module``) and wait until it says ready
        (RuntimeError after 30 s)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            schema.dump_settings(settings),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
            env=_worker_env(),
        )
        worker = cls(index, proc, on_event, on_exit)
        try:
            await asyncio.wait_for(worker.ready(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"media worker {index} did not start") from None
        return worker

    async def ready(self) -> None:
        """Return once the worker said it serves requests."""
        await self._ready.wait()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    async def call(self, request: schema.Request) -> schema.Response:
        """One request over the channel (raises ``media_unavailable`` once the worker died)."""
        if not self.alive:
            raise worker_died()
        return await self.channel.call(request)

    def stop_events(self) -> None:
        """Handle no more of this worker's events (it died and its participants were told)."""
        self._event_task.cancel()

    def request_shutdown(self) -> None:
        """Ask the worker to close its rooms and exit."""
        if self.alive:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.channel.send(schema.Shutdown())

    async def wait_stopped(self) -> None:
        """Wait for the process to exit (killed after 5 s) and end the reading tasks."""
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        for task in (self._read_task, self._event_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await read_line(self._stdout)
                if line is None:
                    break
                message = schema.parse_from_worker(line)
                if isinstance(message, schema.Reply):
                    self.channel.deliver(message)
                elif isinstance(message, schema.Ready):
                    self._ready.set()
                elif isinstance(message, schema.Stats):
                    self.snapshot = message.snapshot
                else:
                    # Handled by another task, in order: a handler may call back into this
                    # worker (media_failed → close_peer), whose reply this loop must read.
                    self._events.put_nowait(message)
        except (ConnectionError, ProtocolError):
            log.exception("media worker %d sent garbage", self.index)
        finally:
            await self._exited()

    async def _event_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._on_event(self, event)
            except Exception:
                log.exception("handling media worker event %s failed", event.type)

    async def _exited(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.channel.fail(worker_died())
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        await self._on_exit(self)

"""What one client may hold open at the node's listener: connections, time, WebSockets.

aiohttp bounds neither the time a client takes to send its request headers (only an idle
keep-alive connection, after 75 s) nor how many connections one address opens. The node's
listener is therefore made with :class:`GuardedSite`, whose protocol factory puts a
:class:`_GuardedProtocol` in front of each of aiohttp's request handlers:

- a connection over ``edge.max_connections`` (all) or ``edge.max_connections_per_address``
  (from one address) is aborted when accepted, before aiohttp sees a byte. A trusted proxy's
  connections carry many clients, so they count only towards the total; its clients are
  counted per forwarded address, request by request (:meth:`ConnectionGuard.client_request`).
- request headers must be complete within ``edge.header_timeout_s`` of the connection or of
  the previous response: a client that started a request gets ``408`` and the connection is
  closed; an idle keep-alive connection is closed quietly.
- a WebSocket counts against ``edge.max_websockets_per_address`` of its client (handshaking
  or established), refused with ``429 too_many_connections``.

Request bodies are timed by the edge middleware (``edge.body_timeout_s``, app/edge.py). The
counts are in ``/metrics`` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fortrolig.core.config_edge import EdgeConfig
from fortrolig.core.errors import RateLimited
from fortrolig.core.metrics import Sample

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n"
    b"Server: Fortrolig\r\n\r\n"
)
CLOSE_AFTER_S = 1.0  # after a response that closes the connection: time to send it, then close
REFUSALS = ("connections", "connections_per_address", "websockets_per_address")
TIMEOUTS = ("headers", "body", "idle")


class TooManyConnections(RateLimited):
    """This client address holds as many connections (or WebSockets) as it may."""

    code = "too_many_connections"


@dataclass(eq=False)
class _Conn:
    """One accepted connection's state in the guard."""

    transport: asyncio.Transport
    address: str | None
    capped: bool  # counted per address (not a trusted proxy's connection)
    busy: int = 0  # requests in progress (a WebSocket is one until it ends)
    seen: bool = False  # bytes arrived since the last request ended
    closing: bool = False  # the last response ended the connection (Connection: close)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class ConnectionGuard:
    """Connection caps and header deadlines of one listener; its counters for ``/metrics``."""

    def __init__(self, cfg: EdgeConfig, is_proxy: Callable[[str | None], bool]) -> None:
        self.cfg = cfg
        self._is_proxy = is_proxy
        self._conns: dict[asyncio.BaseTransport, _Conn] = {}
        self._per_address: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()  # in flight per forwarded client address
        self._websockets: Counter[str] = Counter()
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self.timeouts: dict[str, int] = dict.fromkeys(TIMEOUTS, 0)

    # --- connections (the protocol wrapper calls these) -----------------------------------

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        """A factory for ``loop.create_server`` wrapping ``inner``'s protocols."""
        return lambda: _GuardedProtocol(self, inner())

    def admit(self, transport: asyncio.Transport) -> _Conn | None:
        """Count an accepted connection; None (counted as refused) when it is over a cap."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        capped = address is not None and not self._is_proxy(address)
        if len(self._conns) >= self.cfg.max_connections:
            self.refused["connections"] += 1
            return None
        if capped and address is not None:
            if self._per_address[address] >= self.cfg.max_connections_per_address:
                self.refused["connections_per_address"] += 1
                return None
            self._per_address[address] += 1
        conn = _Conn(transport, address, capped)
        self._conns[transport] = conn
        self._arm(conn)
        return conn

    def release(self, conn: _Conn) -> None:
        """The connection is gone."""
        if self._conns.pop(conn.transport, None) is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
        if conn.capped and conn.address is not None:
            _decrement(self._per_address, conn.address)

    def _arm(self, conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        delay = CLOSE_AFTER_S if conn.closing else self.cfg.header_timeout_s
        conn.timer = asyncio.get_running_loop().call_later(delay, self._headers_due, conn)

    def _headers_due(self, conn: _Conn) -> None:
        conn.timer = None
        if conn.busy or conn.transport.is_closing():
            return
        if conn.transport.get_write_buffer_size():  # a response is still going out: wait
            self._arm(conn)
            return
        if conn.closing:  # aiohttp would read the rest of an unread body for 10 s more
            pass
        elif conn.seen:  # a request began and its headers did not arrive in time
            self.timeouts["headers"] += 1
            conn.transport.write(REQUEST_TIMEOUT)
        else:
            self.timeouts["idle"] += 1
        conn.transport.close()

    # --- requests (the edge middleware calls these) ---------------------------------------

    @contextlib.contextmanager
    def request(self, transport: asyncio.BaseTransport | None) -> Iterator[_Conn | None]:
        """A request in progress on ``transport``: no header deadline until it ends. Set
        ``closing`` on the connection it yields when the response ends the connection."""
        conn = self._conns.get(transport) if transport is not None else None
        if conn is None:  # not from a guarded listener (an in-process test server)
            yield None
            return
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        conn.busy += 1
        conn.seen = False
        try:
            yield conn
        finally:
            conn.busy -= 1
            # Only bytes after this response make the next deadline a 408: what arrived during
            # the request (its body) must not turn a quiet keep-alive close into a stray 408.
            conn.seen = False
            if conn.busy == 0 and conn.transport in self._conns:
                self._arm(conn)

    @contextlib.contextmanager
    def client_request(self, client: str | None, forwarded: bool) -> Iterator[None]:
        """A request of a client behind a trusted proxy, counted per forwarded address."""
        if not forwarded or client is None:
            yield
            return
        with self._held(
            self._requests,
            client,
            self.cfg.max_connections_per_address,
            "connections_per_address",
            "too many concurrent requests from this address",
        ):
            yield

    def websocket(self, client: str | None) -> contextlib.AbstractContextManager[None]:
        """A WebSocket of ``client`` for as long as its handler runs."""
        return self._held(
            self._websockets,
            client or "",
            self.cfg.max_websockets_per_address,
            "websockets_per_address",
            "too many WebSocket connections from this address",
        )

    @contextlib.contextmanager
    def _held(
        self, counter: Counter[str], key: str, cap: int, reason: str, message: str
    ) -> Iterator[None]:
        """One of ``key``'s ``cap`` places in ``counter`` while the block runs, else refused."""
        if counter[key] >= cap:
            self.refused[reason] += 1
            raise TooManyConnections(message)
        counter[key] += 1
        try:
            yield
        finally:
            _decrement(counter, key)

    def count_body_timeout(self) -> None:
        self.timeouts["body"] += 1

    def samples(self) -> Iterator[Sample]:
        """``/metrics``: open connections, refusals and timeouts by kind."""
        yield Sample(
            "fortrolig_http_connections", "Open HTTP connections", "gauge", len(self._conns)
        )
        yield Sample(
            "fortrolig_http_websockets", "Open WebSockets", "gauge", self._websockets.total()
        )
        for reason, n in self.refused.items():
            yield Sample(
                "fortrolig_http_refused_total",
                "Connections and requests refused by a cap, by cap",
                "counter",
                n,
                {"reason": reason},
            )
        for phase, n in self.timeouts.items():
            yield Sample(
                "fortrolig_http_timeouts_total",
                "Connections cut off by a deadline: headers/body (408) or idle",
                "counter",
                n,
                {"phase": phase},
            )


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's request handler behind the guard: refused connections never reach it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._conn = self._guard.admit(transport)
        if self._conn is None:
            transport.abort()
            return
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn.seen = True
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._conn is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.release(self._conn)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._conn is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._conn is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """aiohttp's TCP site with :class:`ConnectionGuard` in front of every connection."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard | None,
        *,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory: Callable[[], Any] = server
        if self._guard is not None:
            factory = self._guard.protocol_factory(server)
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog
        )

"""The WebSocket transport of the signaling protocol (docs/protocol.md).

Owns what is about the connection rather than the conversation: the handshake deadline, the
message size limit (aiohttp closes with 1009), no compression (no inflation bombs), a
per-connection rate limit, and ordered outbound messages through one writer task. Which close
code an error or an ending gets is decided in :mod:`fortrolig.signaling.closes`; this module
carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

from fortrolig.core.errors import FortroligError, ProtocolError
from fortrolig.core.log_limit import RateLimitedLog

from . import protocol as p
from .closes import (
    CLOSE_HANDSHAKE_TIMEOUT,
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    outcome_of,
)
from .rooms import TokenBucket
from .service import Session, SignalingService

log = logging.getLogger(__name__)
# A client can cause these lines (a flood of slow or failing connections): bounded rate.
limited_log = RateLimitedLog(log)

OUTBOUND_QUEUE = 512  # messages; a client this far behind is cut off rather than buffered
RATE_STRIKES = 20  # rate-limited messages tolerated before the connection is closed


class WsOutbound:
    """Ordered, bounded outbound messages of one connection, written by one task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(OUTBOUND_QUEUE)
        self._closing = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def send(self, msg: p.ServerMessage) -> None:
        if self._closing:
            return
        try:
            self._queue.put_nowait(p.dump(msg))
        except asyncio.QueueFull:
            limited_log.warning("outbound queue full; closing a slow connection")
            self.close(CLOSE_POLICY, "too slow")

    @property
    def closing(self) -> bool:
        """Whether this side has begun closing the connection."""
        return self._closing

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((code, reason))
        if self._queue.full():  # make room for the close itself
            self.task.cancel()
            asyncio.get_running_loop().create_task(self._ws.close(code=code))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):
                code, reason = item
                await self._ws.close(code=code, message=reason.encode()[:120])
                return
            try:
                await self._ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    async def drain_and_stop(self) -> None:
        """Let queued messages (and a queued close) go out, briefly; then stop the writer."""
        if not self.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._idle()), timeout=1.0)
            except TimeoutError:
                pass
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _idle(self) -> None:
        while not self._queue.empty() and not self.task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def handle_ws(
    request: web.Request,
    service: SignalingService,
    open_sockets: set[web.WebSocketResponse] | None = None,
) -> web.WebSocketResponse:
    """Serve one signaling WebSocket connection from handshake to cleanup.

    The connection is in ``open_sockets`` (when given) while it is open, so that the node can
    close every one of them when it shuts down.
    """
    cfg = service.config.signaling
    # aiohttp refuses a message of exactly ``max_msg_size`` bytes; the documented limit is
    # inclusive (a message of max_message_bytes is allowed, one byte more closes with 1009).
    # decode_text=False: text frames arrive as bytes and the protocol parser decodes them, so
    # invalid UTF-8 is the documented bad_json/1002 (aiohttp would close with 1007 itself).
    ws = web.WebSocketResponse(
        max_msg_size=cfg.max_message_bytes + 1,
        heartbeat=cfg.heartbeat_s,
        compress=False,
        decode_text=False,
    )
    await ws.prepare(request)
    if open_sockets is not None:
        open_sockets.add(ws)
    out = WsOutbound(ws)
    session = service.new_session(out)
    try:
        if await _handshake(ws, out, session, service):
            refresher = asyncio.get_running_loop().create_task(_refresh_resume(session, service))
            try:
                await _serve(ws, out, session, service)
            finally:
                refresher.cancel()
    except Exception:
        limited_log.exception("signaling session failed")
        service.count_error("internal_error")
        out.close(CLOSE_INTERNAL, "internal error")
    finally:
        # Gone without a leave, and not closed by us for a fault: hold its place to come back.
        await session.close("disconnected", hold=not out.closing)
        await out.drain_and_stop()
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
        if open_sockets is not None:
            open_sockets.discard(ws)
    return ws


async def _handshake(
    ws: web.WebSocketResponse, out: WsOutbound, session: Session, service: SignalingService
) -> bool:
    """The first message must be ``hello`` within the deadline; True when authenticated."""
    try:
        # One deadline for the whole handshake: ``receive(timeout=...)`` restarts its timer on
        # every WebSocket ping/pong it handles, so a client pinging could stay unauthenticated.
        async with asyncio.timeout(service.config.signaling.handshake_timeout_s):
            msg = await ws.receive()
    except TimeoutError:
        service.count_error("handshake_timeout")
        out.close(CLOSE_HANDSHAKE_TIMEOUT, "no hello in time")
        return False
    if msg.type != WSMsgType.TEXT:
        _transport_end(msg, out, service)
        return False
    ref = "hello"
    try:
        hello = p.parse(msg.data)
        if not isinstance(hello, p.Hello):
            ref = hello.type  # the error answers that message, not a hello
            raise ProtocolError("the first message must be hello", code="hello_expected")
        service.count_message("hello")
        await session.hello(hello)
        return True
    except FortroligError as exc:
        _fail(out, service, exc, ref, handshake=True)
    return False


async def _serve(
    ws: web.WebSocketResponse, out: WsOutbound, session: Session, service: SignalingService
) -> None:
    cfg = service.config.signaling
    clock = service.clock
    bucket = TokenBucket(cfg.rate_limit_per_s, cfg.rate_burst, clock.monotonic())
    strikes = 0
    while not session.closed:
        msg = await ws.receive()
        if msg.type != WSMsgType.TEXT:
            _transport_end(msg, out, service)
            return
        if not bucket.allow(clock.monotonic()):
            strikes += 1
            service.count_error("rate_limited")
            out.send(p.Error(code="rate_limited", message="slow down", ref=None))
            if strikes >= RATE_STRIKES:
                out.close(CLOSE_POLICY, "message flood")
                return
            continue
        ref: str | None = None
        try:
            parsed = p.parse(msg.data)
            ref = parsed.type
            service.count_message(ref)
            await session.handle(parsed)
        except FortroligError as exc:
            if _fail(out, service, exc, ref):
                return


async def _refresh_resume(session: Session, service: SignalingService) -> None:
    """Keep the client holding a valid resume token for as long as the connection lives."""
    interval = max(1.0, service.config.auth.resume_token_ttl_s / 2)
    while not session.closed:
        await asyncio.sleep(interval)
        session.refresh_resume_token()


def _fail(
    out: WsOutbound,
    service: SignalingService,
    exc: FortroligError,
    ref: str | None,
    *,
    handshake: bool = False,
) -> bool:
    """Answer an error as :func:`~fortrolig.signaling.closes.outcome_of` says; True if the
    connection ends."""
    outcome = outcome_of(exc, handshake=handshake)
    if exc.fault == "server":
        limited_log.error("server error in session: %r", exc)
        service.count_error("internal_error")
    else:
        service.count_error(exc.code)
    if outcome.send_error:
        out.send(p.Error(code=exc.code, message=exc.message[:500], ref=ref))
    if outcome.bye is not None:
        out.send(p.Bye(reason=outcome.bye))
    if outcome.close is not None:
        out.close(outcome.close, outcome.reason)
    return outcome.ends


def _transport_end(msg: WSMessage, out: WsOutbound, service: SignalingService) -> None:
    """A non-text frame: binary is a protocol error; close/error frames end the session."""
    if msg.type == WSMsgType.BINARY:
        service.count_error("binary_frame")
        out.close(CLOSE_PROTOCOL, "binary frames are not part of the protocol")
    elif msg.type == WSMsgType.ERROR:
        # aiohttp has already closed the socket (1009 for an oversize message).
        too_big = isinstance(msg.data, WebSocketError) and msg.data.code == CLOSE_TOO_BIG
        service.count_error("too_large" if too_big else "transport_error")

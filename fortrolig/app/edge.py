"""Where the node meets the web: its own TLS (reloaded), reverse proxies, HSTS.

- ``server.tls_cert_file``/``tls_key_file``: :class:`~fortrolig.core.tls.ReloadingTls` is the
  listening context; :func:`tls_reload_ctx` looks at the files every
  ``server.tls_reload_interval_s``.
- ``server.trusted_proxies``: only a connection from one of them may say, in
  ``X-Forwarded-For`` and ``X-Forwarded-Proto``, who the client is and whether it came over
  https. From anyone else the headers are ignored (a client could write them itself).
- HSTS on every response to a request that arrived over https (directly or at the proxy).
- Security headers on every response (pages, static files, API, errors) and no version
  banner: :func:`security_headers_on_prepare`.
- Request bodies: :func:`limits_middleware` reads each one under ``edge.body_timeout_s``
  (``408`` after it) and refuses one nested too deeply before any handler runs; it also keeps
  the per-address caps of :mod:`fortrolig.app.connections` for proxied clients and WebSockets.
- ``/metrics``: :func:`metrics_access` decides who may read it on this listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from fortrolig.accounts.subscription_http import WEBHOOK_PATH
from fortrolig.core.config import Config, ServerConfig, read_secret_file
from fortrolig.core.config_edge import EdgeConfig
from fortrolig.core.config_net import parse_networks
from fortrolig.core.errors import PayloadTooLarge, RequestTimeout
from fortrolig.core.http_body import check_json_depth, read_body
from fortrolig.core.tls import ReloadingTls
from fortrolig.journal.http import MAX_BODY as JOURNAL_MAX_BODY
from fortrolig.journal.http import PREFIX as JOURNAL_PREFIX
from fortrolig.web.http import PAGE_HEADERS

from .connections import ConnectionGuard

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_ADDRESS: web.RequestKey[str | None] = web.RequestKey("fortrolig.client_address")
"""Request key: the client's address as the access log should name it (after a proxy)."""
SECURE = web.RequestKey("fortrolig.secure", bool)
"""Request key: True when the client's request came over https (here or at a trusted proxy)."""
FORWARDED = web.RequestKey("fortrolig.forwarded", bool)
"""Request key: True when a trusted proxy named the client (its address is not the peer's)."""
MAX_REQUEST_BODY = 64 * 1024
"""The largest body a route takes unless :data:`BODY_LIMITS` names it (each may allow less)."""
BODY_LIMITS = ((JOURNAL_PREFIX, JOURNAL_MAX_BODY),)
"""Path prefixes that take larger bodies: a session note may be 100,000 characters."""
LARGEST_BODY = max(MAX_REQUEST_BODY, *(limit for _, limit in BODY_LIMITS))
"""aiohttp's ``client_max_size``: the edge reads each body under its route's own limit."""


def body_limit(path: str) -> int:
    """The most bytes a request to ``path`` may carry, read before any handler runs."""
    for prefix, limit in BODY_LIMITS:
        if path == prefix or path.startswith(prefix + "/"):
            return limit
    return MAX_REQUEST_BODY


RAW_BODY_PATHS = frozenset({WEBHOOK_PATH})
"""Bodies read as bytes by their handler: the webhook checks its signature before any parse."""
WS_PATH = "/ws"
# What every response says, whatever it is: no sniffing, no referrer, no framing, no banner.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Server": "Fortrolig",
}
# Not a page (API, errors, assets): nothing may run or load in its context, and nobody frames it.
NOT_PAGE_CSP = "default-src 'none'; frame-ancestors 'none'"
# Our own scripts: the same, but a worker (which runs under its script's own policy, as Firefox
# enforces) may import the page's other modules; it loads or connects to nothing else.
SCRIPT_CSP = "default-src 'none'; script-src 'self'; frame-ancestors 'none'"
SCRIPT_TYPES = ("application/javascript", "text/javascript")
STATIC_PREFIX = "/static/"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: str | None, proxies: tuple[Network, ...]) -> bool:
    found = _address(address or "")
    return found is not None and any(found in net for net in proxies)


def forwarded_client(
    peer: str | None, forwarded_for: str, proxies: tuple[Network, ...]
) -> str | None:
    """The client's address: ``peer``, or, when ``peer`` is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy (the left ones are whatever
    the client wrote). A malformed entry ends the walk: the last good hop is used."""
    if not _trusted(peer, proxies) or not forwarded_for.strip():
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        if _address(hop) is None:
            break
        client = str(_address(hop))
        if not _trusted(client, proxies):
            break
    return client


def forwarded_scheme(
    peer: str | None, proto: str, secure: bool, proxies: tuple[Network, ...]
) -> bool:
    """Whether the client's request came over https: this connection's TLS, or a trusted
    proxy's ``X-Forwarded-Proto`` (its right-most value, the one the nearest proxy set)."""
    if secure or not _trusted(peer, proxies) or not proto.strip():
        return secure
    return proto.split(",")[-1].strip().lower() == "https"


def trusted_proxy_test(server: ServerConfig) -> Callable[[str | None], bool]:
    """Whether an address is one of ``server.trusted_proxies``."""
    proxies = parse_networks(server.trusted_proxies, "server.trusted_proxies")
    return lambda address: _trusted(address, proxies)


def edge_middleware(server: ServerConfig, guard: ConnectionGuard | None = None) -> Any:
    """Resolve the client address and scheme (trusting only ``server.trusted_proxies``), and
    tell the connection guard that a request is in progress (no header deadline meanwhile)."""
    proxies = parse_networks(server.trusted_proxies, "server.trusted_proxies")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote
        client = forwarded_client(peer, request.headers.get("X-Forwarded-For", ""), proxies)
        secure = forwarded_scheme(
            peer, request.headers.get("X-Forwarded-Proto", ""), request.secure, proxies
        )
        # Set on the original request: the access logger and on_response_prepare see that one.
        request[CLIENT_ADDRESS] = client
        request[SECURE] = secure
        request[FORWARDED] = client != peer
        if client is not None and (client != peer or secure != request.secure):
            request = request.clone(remote=client, scheme="https" if secure else "http")
        if guard is None:
            return await handler(request)
        with guard.request(request.transport) as conn:
            response = await handler(request)
            if conn is not None and response.keep_alive is False:  # e.g. after a 408
                conn.closing = True
            return response

    return middleware


def limits_middleware(edge: EdgeConfig, guard: ConnectionGuard) -> Any:
    """Per-address caps of proxied clients and WebSockets, then the body: read whole within
    ``edge.body_timeout_s`` (``408 request_timeout`` and the connection closed after it), at
    most :func:`body_limit` bytes for its path, and refused (``400 bad_json``) when it nests deeper
    than the JSON limit, before the handler runs. Inside the error middleware: its refusals
    get the documented error bodies."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.get(CLIENT_ADDRESS, request.remote)
        with guard.client_request(client, request.get(FORWARDED, False)):
            if request.body_exists:
                await _read_body_first(request, edge, guard)
            if request.path == WS_PATH:
                with guard.websocket(client):
                    return await handler(request)
            return await handler(request)

    return middleware


async def _read_body_first(request: web.Request, edge: EdgeConfig, guard: ConnectionGuard) -> None:
    try:
        async with asyncio.timeout(edge.body_timeout_s):
            raw = await read_body(request, body_limit(request.path))
    except TimeoutError:
        guard.count_body_timeout()
        raise RequestTimeout(
            f"the request body did not arrive within {edge.body_timeout_s:g} s"
        ) from None
    except web.HTTPRequestEntityTooLarge:  # chunked past client_max_size
        raise PayloadTooLarge("request body too large") from None
    if request.path not in RAW_BODY_PATHS:
        check_json_depth(raw)


def hsts_on_prepare(max_age_s: int) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook adding Strict-Transport-Security to https responses.

    Browsers ignore the header over http, so it is sent only where it means something;
    ``max_age_s`` 0 turns it off.
    """
    value = f"max-age={max_age_s}"

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        if max_age_s and request.get(SECURE, request.secure):
            response.headers.setdefault("Strict-Transport-Security", value)

    return add


async def security_headers_on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` hook: the security headers on every response.

    Pages (HTML, including ``/static/*.html``) get the page policy of ``web/http.py``; anything
    else a CSP that lets nothing run or load. Everything is ``no-store`` (personal data: API,
    ``/auth``, join tokens, errors) but static assets, which hold none and keep their ETag.
    """
    headers = response.headers
    for name, value in COMMON_HEADERS.items():
        headers[name] = value if name == "Server" else headers.get(name, value)
    page = (response.content_type or "").startswith("text/html")
    if page:
        for name, value in PAGE_HEADERS.items():
            headers.setdefault(name, value)
    elif request.path.startswith(STATIC_PREFIX) and response.content_type in SCRIPT_TYPES:
        headers.setdefault("Content-Security-Policy", SCRIPT_CSP)
    else:
        headers.setdefault("Content-Security-Policy", NOT_PAGE_CSP)
    if page or not request.path.startswith(STATIC_PREFIX) or response.status >= 400:
        headers.setdefault("Cache-Control", "no-store")


def metrics_access(config: Config) -> Callable[[web.Request], bool]:
    """Who may read ``/metrics`` on the node's listener (the metrics listener admits anyone).

    With ``metrics.token_file``: a request bearing that secret. Else, when ``metrics.listen``
    is set: nobody here. Else: only a request from this machine that no proxy forwarded.
    """
    if config.metrics.token_file is not None:
        secret = read_secret_file(config.metrics.token_file)
        expected = b"Bearer " + secret
        return lambda request: hmac.compare_digest(
            request.headers.get("Authorization", "").encode("utf-8", "replace"), expected
        )
    if config.metrics.listen_address is not None:
        return lambda request: False
    return _local_unforwarded


def _local_unforwarded(request: web.Request) -> bool:
    if request.get(FORWARDED, False) or {"X-Forwarded-For", "Forwarded"} & set(request.headers):
        return False
    found = _address(request.get(CLIENT_ADDRESS, request.remote) or "")
    return found is not None and found.is_loopback


def server_tls(server: ServerConfig) -> ReloadingTls | None:
    """The node's own TLS when configured (raises ConfigError for unusable files)."""
    if server.tls_cert_file is None or server.tls_key_file is None:
        return None
    return ReloadingTls(server.tls_cert_file, server.tls_key_file)


def tls_reload_ctx(
    tls: ReloadingTls, interval_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that checks the certificate files every ``interval_s`` seconds."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(interval_s)
            # Reading two small files: cheap enough for the event loop every few seconds.
            tls.check()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(watch(), name="tls-reload")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx

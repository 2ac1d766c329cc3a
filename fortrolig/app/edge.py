"""Where the node meets the web: its own TLS (reloaded), reverse proxies, HSTS.

- ``server.tls_cert_file``/``tls_key_file``: :class:`~fortrolig.core.tls.ReloadingTls` is the
  listening context; :func:`tls_reload_ctx` looks at the files every
  ``server.tls_reload_interval_s``.
- ``server.trusted_proxies``: only a connection from one of them may say, in
  ``X-Forwarded-For`` and ``X-Forwarded-Proto``, who the client is and whether it came over
  https. From anyone else the headers are ignored (a client could write them itself).
- HSTS on every response to a request that arrived over https (directly or at the proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from fortrolig.core.config import ServerConfig
from fortrolig.core.config_net import parse_networks
from fortrolig.core.tls import ReloadingTls

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CLIENT_ADDRESS: web.RequestKey[str | None] = web.RequestKey("fortrolig.client_address")
"""Request key: the client's address as the access log should name it (after a proxy)."""
SECURE = web.RequestKey("fortrolig.secure", bool)
"""Request key: True when the client's request came over https (here or at a trusted proxy)."""


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


def edge_middleware(server: ServerConfig) -> Any:
    """Resolve the client address and scheme (trusting only ``server.trusted_proxies``)."""
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
        if client is not None and (client != peer or secure != request.secure):
            request = request.clone(remote=client, scheme="https" if secure else "http")
        return await handler(request)

    return middleware


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

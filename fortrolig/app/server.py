"""Composition root: builds the aiohttp application from a validated Config.

Application state lives under ``web.AppKey``s; resources (the SFU) are ``cleanup_ctx`` async
generators, closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web

from fortrolig.core.clock import SystemClock
from fortrolig.core.config import Config, read_secret_file
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.core.metrics import CONTENT_TYPE, Metrics, Sample
from fortrolig.media.settings import IceServer, MediaSettings
from fortrolig.media.sfu import Sfu
from fortrolig.signaling.auth import MemoryJtiStore, TokenIssuer, TokenVerifier
from fortrolig.signaling.http import auth_middleware, error_middleware, room_routes
from fortrolig.signaling.service import SignalingService
from fortrolig.signaling.ws import handle_ws
from fortrolig.web.http import web_routes

log = logging.getLogger(__name__)

SFU_KEY = web.AppKey("sfu", Sfu)
SIGNALING_KEY = web.AppKey("signaling", SignalingService)
METRICS_KEY = web.AppKey("metrics", Metrics)
CONFIG_KEY = web.AppKey("config", Config)
LOOP_LAG_KEY = web.AppKey("loop_lag", list)


def public_url(config: Config) -> str:
    """The base URL links are built on."""
    return (config.server.public_url or f"http://{config.server.host}:{config.server.port}").rstrip(
        "/"
    )


def media_settings(config: Config) -> MediaSettings:
    """The SFU's settings from the media section (TURN credentials come in a later issue)."""
    m = config.media
    servers = tuple(IceServer(urls=(url,)) for url in m.stun_urls)
    return MediaSettings(
        ice_host_addresses=m.ice_host_addresses,
        ice_servers=servers,
        max_bitrate_bps=m.max_bitrate_bps,
        min_bitrate_bps=m.min_bitrate_bps,
        keyframe_min_interval_ms=m.keyframe_min_interval_ms,
    )


def build_app(config: Config) -> web.Application:
    """The whole node: signaling API and WebSocket, the in-process SFU, health and metrics."""
    clock = SystemClock()
    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    signing_key, keyset = load_or_create_signing_keys(config.server.data_dir)
    issuer = TokenIssuer(signing_key, config.auth.issuer, clock)
    verifier = TokenVerifier(
        keyset, config.auth.issuer, clock, config.auth.clock_skew_s, MemoryJtiStore(clock)
    )
    sfu = Sfu(media_settings(config))
    secret = None
    if config.media.turn_secret_file is not None:
        secret = read_secret_file(config.media.turn_secret_file)
    service = SignalingService(config, sfu, issuer, verifier, clock, turn_secret=secret)
    metrics = Metrics({"region": config.server.region})

    app = web.Application(
        middlewares=[error_middleware, auth_middleware(service)],  # type: ignore[list-item]
        client_max_size=64 * 1024,
    )
    app[CONFIG_KEY] = config
    app[SFU_KEY] = sfu
    app[SIGNALING_KEY] = service
    app[METRICS_KEY] = metrics
    app[LOOP_LAG_KEY] = [0.0]
    metrics.add_source(service.samples)
    metrics.add_source(sfu.samples)
    metrics.add_source(lambda: _process_samples(app))

    async def ws(request: web.Request) -> web.StreamResponse:
        return await handle_ws(request, service)

    app.router.add_get("/ws", ws)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.add_routes(room_routes(service, public_url(config)))
    app.add_routes(web_routes())
    app.cleanup_ctx.append(_sfu_ctx)
    app.cleanup_ctx.append(_loop_lag_ctx)
    return app


def _process_samples(app: web.Application) -> Iterator[Sample]:
    yield Sample(
        "fortrolig_event_loop_lag_seconds",
        "Latest event-loop lag measured every 0.5 s",
        "gauge",
        app[LOOP_LAG_KEY][0],
    )
    yield Sample(
        "fortrolig_open_fds",
        "Open file descriptors of the signaling process",
        "gauge",
        len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1,
    )
    yield Sample(
        "fortrolig_asyncio_tasks",
        "Live asyncio tasks in the signaling process",
        "gauge",
        len(asyncio.all_tasks()),
    )


async def _sfu_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SFU_KEY].close()


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    async def measure() -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.5)
            app[LOOP_LAG_KEY][0] = max(0.0, time.monotonic() - start - 0.5)

    task = asyncio.get_running_loop().create_task(measure())
    yield
    task.cancel()


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    ready: dict[str, Any] = {"status": "ready"}
    return web.json_response(ready)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

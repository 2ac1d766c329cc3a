"""Running the node's listeners: the guarded HTTP listener and, when configured, metrics.

What ``web.run_app`` did, with the node's own site (:class:`~fortrolig.app.connections.
GuardedSite`: connection caps and header deadlines) and a second, metrics-only listener on
``metrics.listen``. SIGTERM and SIGINT stop it: the application's shutdown hooks run (drain,
WebSockets closed with 1001), then its cleanup contexts.
"""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from fortrolig.core.config import Config

from .connections import GuardedSite
from .server import GUARD_KEY, TLS_KEY, metrics_app

KEEPALIVE_TIMEOUT_S = 75.0  # aiohttp's run_app default; the guard closes idle ones earlier


def run(app: web.Application, config: Config, access_log_class: type[AbstractAccessLogger]) -> None:
    """Serve ``app`` until SIGTERM or SIGINT."""
    asyncio.run(_serve(app, config, access_log_class))


async def _serve(
    app: web.Application, config: Config, access_log_class: type[AbstractAccessLogger]
) -> None:
    tls = app[TLS_KEY]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=access_log_class,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
    )
    await runner.setup()
    runners = [runner]
    try:
        site = GuardedSite(
            runner,
            config.server.host,
            config.server.port,
            app[GUARD_KEY],
            ssl_context=tls.context if tls else None,
        )
        await site.start()
        listen = config.metrics.listen_address
        if listen is not None:
            metrics = web.AppRunner(metrics_app(app), handle_signals=False, access_log=None)
            await metrics.setup()
            runners.append(metrics)
            await web.TCPSite(metrics, listen[0], listen[1]).start()
        await _until_stopped()
    finally:
        for each in reversed(runners):
            await each.cleanup()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

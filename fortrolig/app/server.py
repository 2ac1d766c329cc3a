"""Composition root: builds the aiohttp application from a validated Config.

Application state lives under ``web.AppKey``s; resources (the journal, the SFU) are
``cleanup_ctx`` async generators, closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSCloseCode, web

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import SystemClock
from fortrolig.core.config import Config, read_private_file, read_secret_file
from fortrolig.core.errors import FortroligError
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.core.metrics import CONTENT_TYPE, Metrics, Sample
from fortrolig.core.slot import Slot
from fortrolig.core.tls import ReloadingTls
from fortrolig.journal.factory import open_journal, retention_loop
from fortrolig.journal.http import journal_routes
from fortrolig.journal.recording_http import recording_routes
from fortrolig.journal.service import JournalService
from fortrolig.media.backend import MediaBackend
from fortrolig.media.pool import WorkerPool
from fortrolig.media.settings import IceServer, MediaSettings
from fortrolig.media.sfu import Sfu
from fortrolig.recording.recorder import DirectoryRecorders
from fortrolig.recording.worker import RECORDING_WORKER_MODULE
from fortrolig.signaling.auth import TokenIssuer, TokenVerifier
from fortrolig.signaling.cluster import Cluster, ThisNode
from fortrolig.signaling.eid.client import EidClient
from fortrolig.signaling.eid.keyfiles import load_client_auth
from fortrolig.signaling.http import PRINCIPAL, auth_middleware, error_middleware, room_routes
from fortrolig.signaling.invite_http import eid_ctx, invite_routes
from fortrolig.signaling.invites import InviteService
from fortrolig.signaling.records_sql import (
    SqlInviteStore,
    SqlJtiStore,
    SqlPendingStore,
    SqlRoomStore,
)
from fortrolig.signaling.service import AccessGate, SignalingService
from fortrolig.signaling.smtp import SmtpMailer
from fortrolig.signaling.ws import handle_ws
from fortrolig.storage import open_database
from fortrolig.web.http import web_routes

from .cluster_ctx import (
    cluster_ctx,
    coordination_for,
    drain_on_shutdown,
    node_id_for,
    records_ctx,
)
from .connections import ConnectionGuard
from .edge import (
    LARGEST_BODY,
    edge_middleware,
    hsts_on_prepare,
    limits_middleware,
    metrics_access,
    security_headers_on_prepare,
    server_tls,
    tls_reload_ctx,
    trusted_proxy_test,
)
from .gate import ACCOUNTS_KEY, export_check, gate_ctx, gate_middleware, gate_routes
from .recordings import RecordingBridge

log = logging.getLogger(__name__)

MEDIA_KEY: web.AppKey[MediaBackend] = web.AppKey("media")
SIGNALING_KEY = web.AppKey("signaling", SignalingService)
METRICS_KEY = web.AppKey("metrics", Metrics)
CONFIG_KEY = web.AppKey("config", Config)
LOOP_LAG_KEY = web.AppKey("loop_lag", list)
SHUTTING_DOWN_KEY = web.AppKey("shutting_down", list)
OPEN_WEBSOCKETS_KEY: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("open_websockets")
# On shutdown, how long clients get to answer the close of their WebSocket (they normally do
# at once); aiohttp would otherwise wait up to 60 s for open connections, beyond a container's
# stop grace period (10 s by default), and the node would be killed instead of stopping.
SHUTDOWN_CLOSE_TIMEOUT_S = 5.0
# /readyz refuses above this event-loop lag: a loop this late cannot keep media timers.
READY_MAX_LOOP_LAG_S = 1.0
JOURNAL_KEY = web.AppKey("journal", JournalService)
CLUSTER_KEY = web.AppKey("cluster", Cluster)
RECORDS_FILE = "records.db"
RECORDS_KEYRING = Path("keys") / "records-keyring.json"
INVITES_KEY = web.AppKey("invites", InviteService)
TLS_KEY: web.AppKey[ReloadingTls | None] = web.AppKey("tls")
GUARD_KEY = web.AppKey("connection_guard", ConnectionGuard)
METRICS_ACCESS_KEY: web.AppKey[Callable[[web.Request], bool]] = web.AppKey("metrics_access")


def public_url(config: Config) -> str:
    """The base URL links are built on (``server.public_url``, else this node's own)."""
    return config.server.base_url


def media_settings(config: Config) -> MediaSettings:
    """The SFU's settings from the media section (TURN credentials are minted per participant by
    signaling, ``signaling/turn.py``; the SFU needs only the STUN URLs)."""
    m = config.media
    servers = tuple(IceServer(urls=(url,)) for url in m.stun_urls)
    return MediaSettings(
        ice_host_addresses=m.ice_host_addresses,
        ice_servers=servers,
        max_bitrate_bps=m.max_bitrate_bps,
        min_bitrate_bps=m.min_bitrate_bps,
        keyframe_min_interval_ms=m.keyframe_min_interval_ms,
        io_thread=m.io_thread,
    )


def media_workers(config: Config) -> int:
    """How many media worker processes to run (1 means in-process)."""
    return config.media.workers or os.cpu_count() or 1


def recording_dir(config: Config) -> Path:
    """Where recorders write their encrypted files before the journal takes them."""
    return config.server.data_dir / "recordings"


def media_backend(config: Config) -> MediaBackend:
    """The SFU in-process (one worker) or a pool of worker processes (one per core); with
    ``media.recording`` each can record (a recorder factory, or the recording worker)."""
    n = media_workers(config)
    settings = media_settings(config)
    if not config.media.recording:
        return Sfu(settings) if n == 1 else WorkerPool(settings, n)
    directory = recording_dir(config)
    if n == 1:
        return Sfu(settings, DirectoryRecorders(directory))
    settings = dataclasses.replace(settings, recording_dir=str(directory))
    return WorkerPool(settings, n, module=RECORDING_WORKER_MODULE)


def mailer(config: Config) -> SmtpMailer | None:
    """The SMTP mailer when ``smtp.host`` is set (its password read from a private file)."""
    smtp = config.smtp
    if not smtp.enabled:
        return None
    password = None
    if smtp.password_file is not None:
        raw = read_private_file(smtp.password_file, "SMTP password file")
        password = raw.decode("utf-8").rstrip("\r\n")
    return SmtpMailer(smtp, password)


def build_app(config: Config) -> web.Application:
    """The whole node: signaling API and WebSocket, the in-process SFU, health and metrics."""
    clock = SystemClock()
    data_dir = config.server.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    signing_key, keyset = load_or_create_signing_keys(data_dir)
    # Everything acknowledged outlives this process: records in the database (SQLite in the
    # data dir, or the cluster's PostgreSQL), personal fields sealed under the records keyring.
    records = open_database(config.records.database_url, data_dir / RECORDS_FILE)
    keyring = FileKeyring.open(config.records.keyring_path or data_dir / RECORDS_KEYRING)
    issuer = TokenIssuer(signing_key, config.auth.issuer, clock)
    verifier = TokenVerifier(
        keyset, config.auth.issuer, clock, config.auth.clock_skew_s, SqlJtiStore(records, clock.now)
    )
    sfu = media_backend(config)
    bridge = None
    if config.media.recording:
        bridge = RecordingBridge(lambda: app[JOURNAL_KEY], sfu, recording_dir(config))
    secret = None
    if config.media.turn_secret_file is not None:
        secret = read_secret_file(config.media.turn_secret_file)
    node = ThisNode(node_id_for(config), config.server.region, public_url(config), clock.now())
    cluster = Cluster(
        coordination_for(config, clock),
        node,
        clock,
        config.coordination,
        standalone=not config.coordination.redis_url,
    )
    access_gate: Slot[AccessGate] = Slot()  # filled by gate_ctx while billing is enforced
    eid: Slot[EidClient] = Slot()  # filled by eid_ctx while the eID client is open
    service = SignalingService(
        config,
        sfu,
        issuer,
        verifier,
        clock,
        turn_secret=secret,
        room_store=SqlRoomStore(records),
        cluster=cluster,
        access_gate=access_gate,
        recordings=bridge,
    )
    mail = mailer(config)
    invites = InviteService(
        service,
        SqlInviteStore(records, keyring),
        mail,
        clock,
        invite_ttl_s=config.invites.ttl_s,
        public_url=public_url(config),
        eid=eid,
        zone=config.invites.time_zone,
        practitioner_name=lambda pid: _practitioner_name(app, pid),
        client_exists=lambda owner, cid: _journal_client_exists(app, owner, cid),
    )
    metrics = Metrics({"region": config.server.region, "node": node.node_id})

    # The edge middleware comes first: every later one (and the handlers, the access log) sees
    # the client's address and scheme as a trusted proxy gave them.
    guard = ConnectionGuard(config.edge, trusted_proxy_test(config.server))
    middlewares = [
        edge_middleware(config.server, guard),
        error_middleware,
        limits_middleware(config.edge, guard),
        auth_middleware(service),
        gate_middleware(config),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=LARGEST_BODY)
    app.on_response_prepare.append(hsts_on_prepare(config.server.hsts_max_age_s))
    app.on_response_prepare.append(security_headers_on_prepare)
    app[GUARD_KEY] = guard
    app[METRICS_ACCESS_KEY] = metrics_access(config)
    tls = server_tls(config.server)
    app[TLS_KEY] = tls
    if tls is not None:
        app.cleanup_ctx.append(tls_reload_ctx(tls, config.server.tls_reload_interval_s))
    app[CONFIG_KEY] = config
    app[MEDIA_KEY] = sfu
    app[SIGNALING_KEY] = service
    app[INVITES_KEY] = invites
    app[METRICS_KEY] = metrics
    app[LOOP_LAG_KEY] = [0.0]
    app[SHUTTING_DOWN_KEY] = [False]
    app[OPEN_WEBSOCKETS_KEY] = set()
    app.on_shutdown.append(_mark_shutting_down)
    # SIGTERM: drain first (rooms end or move, clients reconnect to their new owner), then
    # close whatever connections remain with 1001 so the process stops promptly.
    app.on_shutdown.append(drain_on_shutdown(service, config))
    app.on_shutdown.append(_close_websockets)
    app[CLUSTER_KEY] = cluster
    metrics.add_source(service.samples)
    metrics.add_source(invites.samples)
    metrics.add_source(sfu.samples)
    metrics.add_source(lambda: _process_samples(app))
    metrics.add_source(guard.samples)
    if bridge is not None:
        metrics.add_source(bridge.samples)

    async def ws(request: web.Request) -> web.StreamResponse:
        return await handle_ws(request, service, app[OPEN_WEBSOCKETS_KEY])

    app.cleanup_ctx.append(records_ctx(records))
    app.router.add_get("/ws", ws)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.add_routes(room_routes(service, public_url(config)))
    app.add_routes(invite_routes(invites))
    if config.eid.enabled:  # else eID invites answer verification_unavailable
        pending = SqlPendingStore(
            records,
            keyring,
            clock.now,
            max_entries=config.eid.max_pending,
            grace_s=config.eid.pending_ttl_s,
        )
        redirect_uri = config.eid.callback_url(public_url(config))
        credentials = load_client_auth(config.eid)
        app.cleanup_ctx.append(eid_ctx(eid, config.eid, redirect_uri, credentials, pending))
    app.add_routes(journal_routes(JOURNAL_KEY, lambda request: request.get(PRINCIPAL)))
    app.add_routes(
        recording_routes(JOURNAL_KEY, lambda request: request.get(PRINCIPAL), export_check(config))
    )
    app.add_routes(web_routes())
    app.add_routes(gate_routes())
    app.cleanup_ctx.append(_journal_ctx(config))
    if bridge is not None:
        app.cleanup_ctx.append(_recovery_ctx(bridge))
    app.cleanup_ctx.append(gate_ctx(config, issuer, service, access_gate, mail, public_url(config)))
    app.cleanup_ctx.append(_sfu_ctx)
    app.cleanup_ctx.append(cluster_ctx(service, config))
    app.cleanup_ctx.append(_loop_lag_ctx)
    return app


async def _practitioner_name(app: web.Application, practitioner_id: str) -> str | None:
    """The display name an invite e-mail names (None on a node without accounts)."""
    accounts = app.get(ACCOUNTS_KEY)
    if accounts is None:
        return None
    try:
        return (await accounts.profile(practitioner_id)).display_name
    except FortroligError:
        return None


async def _journal_client_exists(app: web.Application, owner: str, client_id: str) -> bool:
    """Whether ``client_id`` is one of ``owner``'s journal clients."""
    journal = app.get(JOURNAL_KEY)
    if journal is None:  # pragma: no cover - the journal opens with the app
        return False
    row = await journal.store.get_client(client_id)
    return row is not None and row.practitioner_id == owner


def _process_samples(app: web.Application) -> Iterator[Sample]:
    yield Sample(
        "fortrolig_ready",
        "1 when /readyz accepts (the node can take rooms), else 0",
        "gauge",
        0.0 if not_ready_reasons(app) else 1.0,
    )
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


def _journal_ctx(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open the journal (SQLite in the data dir unless configured) and run retention on it.

    Opening first means a node whose keyring does not fit its database never starts serving.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        j = config.journal
        journal = await open_journal(
            config.server.data_dir,
            database_url=j.database_url or None,
            keyring_path=j.keyring_path,
            retention_years=j.retention_years,
        )
        app[JOURNAL_KEY] = journal
        journal.zone = ZoneInfo(config.invites.time_zone)
        journal.practitioner_name = lambda pid: _practitioner_name(app, pid)
        log.info("journal open: %s, retention %d years", journal.store.url, j.retention_years)
        task = asyncio.get_running_loop().create_task(
            retention_loop(journal, interval_s=j.retention_interval_s), name="journal-retention"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await journal.close()

    return ctx


def _recovery_ctx(bridge: RecordingBridge) -> Callable[[web.Application], AsyncIterator[None]]:
    """Before serving: store and end what recordings a crash of this node left behind."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        recovered = await bridge.recover()
        if recovered:
            log.warning("recovered %d recording(s) left by an earlier run", recovered)
        yield

    return ctx


async def _sfu_ctx(app: web.Application) -> AsyncIterator[None]:
    media = app[MEDIA_KEY]
    await media.start()
    yield
    await media.close()


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


async def _mark_shutting_down(app: web.Application) -> None:
    app[SHUTTING_DOWN_KEY][0] = True


async def _close_websockets(app: web.Application) -> None:
    """SIGTERM (or SIGINT): close every signaling WebSocket with 1001 (going away).

    Each connection's handler then ends its session (the participant leaves its room), so
    the node stops promptly; a client reconnects when a node answers again.
    """
    open_sockets = app[OPEN_WEBSOCKETS_KEY]
    sockets = list(open_sockets)
    if not sockets:
        return
    log.info("shutting down: closing %d signaling connections", len(sockets))
    closes = (
        ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in sockets
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*closes, return_exceptions=True), SHUTDOWN_CLOSE_TIMEOUT_S
        )


def not_ready_reasons(app: web.Application) -> list[str]:
    """Why the node cannot take rooms now (empty when it can)."""
    reasons = []
    if app[SHUTTING_DOWN_KEY][0]:
        reasons.append("shutting_down")
    if app[LOOP_LAG_KEY][0] > READY_MAX_LOOP_LAG_S:
        reasons.append("event_loop_lag")
    cluster = app[CLUSTER_KEY]
    if not cluster.healthy:
        reasons.append("coordination_unavailable")
    if cluster.draining:
        reasons.append("draining")
    return reasons


async def _readyz(request: web.Request) -> web.Response:
    reasons = not_ready_reasons(request.app)
    if reasons:
        return web.json_response({"status": "not_ready", "reasons": reasons}, status=503)
    ready: dict[str, Any] = {"status": "ready"}
    return web.json_response(ready)


async def _metrics(request: web.Request) -> web.Response:
    if not request.app[METRICS_ACCESS_KEY](request):
        if request.app[CONFIG_KEY].metrics.token_file is not None:
            body = {"error": {"code": "unauthenticated", "message": "a bearer secret is required"}}
            return web.json_response(
                body, status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
        # Not served on this listener (metrics.listen, or a request from elsewhere).
        return web.json_response(
            {"error": {"code": "not_found", "message": "Not Found"}}, status=404
        )
    return await render_metrics(request.app)


async def render_metrics(app: web.Application) -> web.Response:
    """The node's metrics page (here and on the metrics listener, ``metrics.listen``)."""
    # A worker pool fetches exact counters from every worker, not last second's push.
    await app[MEDIA_KEY].refresh()
    body = app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def metrics_app(node: web.Application) -> web.Application:
    """The metrics listener's application: ``/metrics`` of ``node`` and nothing else."""

    async def page(request: web.Request) -> web.Response:
        return await render_metrics(node)

    app = web.Application()
    app.on_response_prepare.append(security_headers_on_prepare)
    app.router.add_get("/metrics", page)
    return app

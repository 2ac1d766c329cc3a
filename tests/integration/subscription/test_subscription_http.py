"""The webhook and status routes on a real aiohttp server on loopback, with the node's own error
middleware and a Bearer-on-/api/ middleware like the node's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.accounts.billing import SIGNATURE_HEADER, sign
from fortrolig.accounts.subscription_http import subscription_routes
from fortrolig.accounts.subscription_service import SubscriptionService
from fortrolig.accounts.subscription_store import open_subscription_store
from fortrolig.core.clock import FakeClock
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.principal import Principal
from fortrolig.signaling.http import error_middleware

SECRET = b"h" * 32
T = 1_700_000_000
SERVICE = web.AppKey("subscriptions", SubscriptionService)
CALLER = web.RequestKey("caller", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def bearer_on_api(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stand-in for the node's auth middleware: ``Bearer <role>:<subject>`` on /api/ paths."""
    if request.path.startswith("/api/"):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or ":" not in token:
            raise Unauthenticated("a Bearer access token is required", code="token_missing")
        role, _, subject = token.partition(":")
        request[CALLER] = Principal(subject, role)
    return await handler(request)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    service = SubscriptionService(
        open_subscription_store(str(tmp_path / "accounts.db")),
        FakeClock(now=T),
        webhook_secrets=[SECRET],
    )
    app = web.Application(middlewares=[error_middleware, bearer_on_api])
    app[SERVICE] = service

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.close()

    app.cleanup_ctx.append(lifecycle)
    app.add_routes(subscription_routes(SERVICE, lambda r: r.get(CALLER)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


def body(kind: str, eid: str, **data: Any) -> bytes:
    doc = {"id": eid, "type": kind, "created": T, "data": {"practitioner_id": "prac_a", **data}}
    return json.dumps(doc).encode()


async def post(
    client: TestClient[web.Request, web.Application], raw: bytes, header: str | None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[SIGNATURE_HEADER] = header
    resp = await client.post("/billing/webhook", data=raw, headers=headers)
    return resp.status, await resp.json()


async def test_webhook_applies_once_and_reports_duplicates(
    client: TestClient[web.Request, web.Application],
) -> None:
    created = body("subscription_created", "evt_1", plan="monthly", start=T)
    status, doc = await post(client, created, sign(created, SECRET, T))
    assert (status, doc["applied"], doc["duplicate"]) == (200, True, False)
    status, doc = await post(client, created, sign(created, SECRET, T + 10))
    assert (status, doc["applied"], doc["duplicate"]) == (200, False, True)
    paid = body("payment_succeeded", "evt_2", period_start=T)
    assert (await post(client, paid, sign(paid, SECRET, T)))[1]["applied"] is True
    unknown = body("invoice_drafted", "evt_3")
    status, doc = await post(client, unknown, sign(unknown, SECRET, T))
    assert (status, doc["ignored"], doc["applied"]) == (200, True, False)

    resp = await client.get(
        "/api/v1/subscription", headers={"Authorization": "Bearer practitioner:prac_a"}
    )
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    doc = await resp.json()
    assert (doc["state"], doc["access"], doc["reason"], doc["plan"]) == (
        "active",
        "sessions",
        "paid",
        "monthly",
    )
    assert doc["paid_through"] == "2023-12-14T22:13:20Z"


async def test_webhook_errors(client: TestClient[web.Request, web.Application]) -> None:
    raw = body("payment_failed", "evt_9")
    cases = [
        (raw, None, 401, "signature_missing"),
        (raw, "t=1,v2=x", 401, "signature_malformed"),
        (raw, sign(raw, b"x" * 32, T), 401, "signature_invalid"),
        (raw + b" ", sign(raw, SECRET, T), 401, "signature_invalid"),
        (raw, sign(raw, SECRET, T - 301), 401, "signature_stale"),
        (b"{not json", sign(b"{not json", SECRET, T), 400, "malformed_event"),
        (raw, sign(raw, SECRET, T), 409, "not_subscribed"),
    ]
    for data, header, status, code in cases:
        got_status, doc = await post(client, data, header)
        assert (got_status, doc["error"]["code"]) == (status, code), (header, doc)
    big = b"{" + b" " * (64 * 1024) + b"}"
    resp = await client.post(
        "/billing/webhook", data=big, headers={SIGNATURE_HEADER: sign(big, SECRET, T)}
    )
    assert resp.status == 413
    # The refused (409) event was not recorded: once the subscription exists, its retry applies.
    created = body("subscription_created", "evt_c", plan="annual", start=T)
    await post(client, created, sign(created, SECRET, T))
    status, doc = await post(client, raw, sign(raw, SECRET, T))
    assert (status, doc["applied"], doc["duplicate"]) == (200, True, False)


async def test_status_needs_a_practitioner(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/api/v1/subscription")
    assert resp.status == 401
    resp = await client.get("/api/v1/subscription", headers={"Authorization": "Bearer client:c1"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "subscription_forbidden"
    resp = await client.get(
        "/api/v1/subscription", headers={"Authorization": "Bearer practitioner:new"}
    )
    doc = await resp.json()
    assert (resp.status, doc["state"], doc["access"], doc["reason"]) == (
        200,
        "none",
        "none",
        "no_subscription",
    )

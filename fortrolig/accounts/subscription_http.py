"""HTTP routes of the subscription gate: the billing webhook and the caller's own status.

``POST /billing/webhook`` is deliberately outside ``/api/``: the node's authentication
middleware demands a Bearer token on every ``/api/`` path, and the webhook's authentication is
its HMAC signature instead. ``GET /api/v1/subscription`` is authenticated by that middleware; the
composition root passes a function returning the request's :class:`Principal` (as for the
journal), so this package never imports signaling. Handlers raise
:class:`~fortrolig.core.errors.FortroligError`; the application's one error middleware maps them
to ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from fortrolig.accounts import billing
from fortrolig.accounts.subscription_service import SubscriptionService, status_json
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.http_body import read_body
from fortrolig.core.principal import Principal

WEBHOOK_PATH = "/billing/webhook"
STATUS_PATH = "/api/v1/subscription"
_NO_STORE = {"Cache-Control": "no-store"}

PrincipalLookup = Callable[[web.Request], Principal | None]
"""Returns the request's authenticated caller, or None when there is none."""


def subscription_routes(
    service_key: web.AppKey[SubscriptionService], principal: PrincipalLookup
) -> list[web.RouteDef]:
    """The webhook and status routes; the service is ``request.app[service_key]``."""

    async def webhook(request: web.Request) -> web.StreamResponse:
        # The raw bytes: the signature covers exactly these.
        body = await read_body(request, billing.MAX_BODY)
        signature = request.headers.get(billing.SIGNATURE_HEADER)
        outcome = await request.app[service_key].handle_webhook(body, signature)
        return web.json_response(
            {
                "received": True,
                "event_id": outcome.event_id,
                "duplicate": outcome.duplicate,
                "applied": outcome.applied,
                "ignored": outcome.ignored,
            }
        )

    async def own_status(request: web.Request) -> web.StreamResponse:
        caller = principal(request)
        if caller is None:
            raise Unauthenticated("authentication required")
        sub, status = await request.app[service_key].own_status(caller)
        return web.json_response(status_json(sub, status), headers=_NO_STORE)

    return [web.post(WEBHOOK_PATH, webhook), web.get(STATUS_PATH, own_status)]

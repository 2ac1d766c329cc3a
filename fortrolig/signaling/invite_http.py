"""HTTP API of consultations and invites (docs/protocol.md, "Consultations and invites").

Practitioner routes sit under the access-token middleware; the client's two routes
(``/api/v1/invite/redeem`` and ``/api/v1/invite/verify``) are public: the invite secret or the
verification handle in the POST body is the credential, so it never appears in a URL, a log line
or a Referer. Every response that carries a secret is ``Cache-Control: no-store``.

``GET /eid/callback`` is the eID broker's redirect back (the registered ``redirect_uri``): it
finishes the login, claims the invite and answers 303 to the room page with the join token in the
fragment, or 303 to the invite page with ``#error=<code>``. :func:`eid_ctx` opens the eID client
(and its HTTP session) for the application's lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from fortrolig.core.clock import SystemClock
from fortrolig.core.config import EidConfig
from fortrolig.core.errors import BadRequest, Conflict, FortroligError
from fortrolig.core.http_body import only_fields
from fortrolig.core.log_limit import RateLimitedLog
from fortrolig.core.slot import Slot

from .eid.client import EidClient
from .eid.client_auth import ClientAuth
from .eid.errors import EidRejected
from .eid.http import AiohttpEidHttp
from .eid.pending import PendingStore
from .http import json_body, principal
from .invites import (
    EID_RETURN_TO,
    CodeSent,
    Consultation,
    EidRedirect,
    InviteService,
    IssuedInvite,
    JoinGrant,
    ListedConsultation,
    parse_consultation_request,
)

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)  # anyone can call the eID callback: bounded rate

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
EID_CALLBACK_PARAMS = ("code", "state", "iss", "error")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=NO_STORE)


def _consultation_body(c: Consultation) -> dict[str, Any]:
    return {
        "consultation_id": c.id,
        "room_id": c.room_id,
        "verification": c.verification.value,
        "client_name": c.client_name,
        "client_email": c.client_email,
        "client_phone": c.client_phone,
        "created_at": int(c.created_at),
        "scheduled_at": None if c.scheduled_at is None else int(c.scheduled_at),
        "journal_client_id": c.journal_client_id,
    }


def _listed_body(item: ListedConsultation) -> dict[str, Any]:
    return {
        **_consultation_body(item.consultation),
        "state": item.state.value,
        "max_participants": item.max_participants,
    }


def _invite_body(invite: IssuedInvite) -> dict[str, Any]:
    return {"url": invite.url, "expires_at": invite.expires_at, "sent": invite.sent}


def _grant_body(grant: JoinGrant) -> dict[str, Any]:
    return {
        "status": "verified",
        "verification": grant.verification.value,
        "token": grant.token,
        "room_id": grant.room_id,
        "expires_at": grant.expires_at,
        "room_url": grant.room_url,
    }


def invite_routes(invites: InviteService) -> list[web.RouteDef]:
    """Routes of the consultations API and the client's invite redemption."""

    async def create(request: web.Request) -> web.Response:
        who = principal(request)
        req = parse_consultation_request(await json_body(request), invites.clock.now())
        consultation, invite = await invites.create_consultation(who.subject, req)
        body = {
            **_consultation_body(consultation),
            "force_relay": req.force_relay,
            "invite": _invite_body(invite),
        }
        return _json(body, status=201)

    async def show(request: web.Request) -> web.Response:
        who = principal(request)
        consultation = await invites.owned(who.subject, request.match_info["consultation_id"])
        room = await invites.signaling.room_store.room(consultation.room_id)
        force_relay = room is not None and room.force_relay
        return _json({**_consultation_body(consultation), "force_relay": force_relay})

    async def list_all(request: web.Request) -> web.Response:
        who = principal(request)
        query = request.rel_url.query
        only_fields(dict(query), {"journal_client_id", "room_id"})
        if any(len(query.getall(k)) > 1 for k in query):
            raise BadRequest("repeated query parameter", code="bad_field")
        listed = await invites.list_consultations(
            who.subject,
            journal_client_id=query.get("journal_client_id"),
            room_id=query.get("room_id"),
        )
        return _json({"consultations": [_listed_body(x) for x in listed]})

    async def options(request: web.Request) -> web.Response:
        principal(request)
        return _json(invites.options())

    async def reissue(request: web.Request) -> web.Response:
        who = principal(request)
        data = await json_body(request)
        only_fields(data, {"send"})
        send = data.get("send", False)
        if not isinstance(send, bool):
            raise BadRequest("send must be a boolean", code="bad_field")
        invite = await invites.reissue(who.subject, request.match_info["consultation_id"], send)
        return _json(_invite_body(invite), status=201)

    async def redeem(request: web.Request) -> web.Response:
        data = await json_body(request)
        only_fields(data, {"invite"})
        result = await invites.redeem(data.get("invite"))
        if isinstance(result, EidRedirect):
            return _json({"status": "eid_redirect", "verification": "eid", "redirect": result.url})
        if isinstance(result, CodeSent):
            return _json(
                {
                    "status": "code_sent",
                    "verification": "email_code",
                    "handle": result.handle,
                    "email_hint": result.email_hint,
                    "expires_at": result.expires_at,
                    "attempts_left": result.attempts_left,
                }
            )
        return _json(_grant_body(result))

    async def verify(request: web.Request) -> web.Response:
        data = await json_body(request)
        only_fields(data, {"handle", "code"})
        grant = await invites.verify_code(data.get("handle"), data.get("code"))
        return _json(_grant_body(grant))

    async def eid_callback(request: web.Request) -> web.Response:
        # Whatever happens, the answer is a 303 the browser follows: to the room page with the
        # join token in the fragment, or back to the invite page with an error code.
        try:
            location = (await _finish_eid(invites, request)).room_url
        except FortroligError as exc:
            reason = getattr(exc, "reason", None)
            limited_log.info(
                "eID callback refused: %s%s", exc.code, f" ({reason})" if reason else ""
            )
            location = f"{EID_RETURN_TO}#error={exc.code}"
        except Exception:
            limited_log.exception("eID callback failed")
            location = f"{EID_RETURN_TO}#error=internal_error"
        return web.Response(status=303, headers={"Location": location, **NO_STORE})

    return [
        web.post("/api/v1/consultations", create),
        web.get("/api/v1/consultations", list_all),
        web.get("/api/v1/consultation-options", options),
        web.get("/api/v1/consultations/{consultation_id}", show),
        web.post("/api/v1/consultations/{consultation_id}/invites", reissue),
        web.post("/api/v1/invite/redeem", redeem),
        web.post("/api/v1/invite/verify", verify),
        # GET only: a HEAD (a link checker, a prefetch) must not spend the one-time state.
        web.get("/eid/callback", eid_callback, allow_head=False),
    ]


async def _finish_eid(invites: InviteService, request: web.Request) -> JoinGrant:
    """The broker's redirect back: ``code``/``state``/``iss``, or ``error``/``state``."""
    query = request.query
    eid = invites.eid
    if eid is None:
        raise Conflict("eID verification is not configured", code="verification_unavailable")
    if any(len(query.getall(name, [])) > 1 for name in EID_CALLBACK_PARAMS):
        raise EidRejected("repeated callback parameter", code="eid_callback_invalid")
    state = query.get("state", "")
    if "error" in query:
        raise await eid.abort(state, query.get("error"))
    identity = await eid.finish(query.get("code", ""), state, iss=query.get("iss"))
    return await invites.complete_eid(identity)


def eid_ctx(
    slot: Slot[EidClient],
    config: EidConfig,
    redirect_uri: str,
    credentials: ClientAuth,
    pending: PendingStore | None = None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` that fills ``slot`` (the invite service's) with an :class:`EidClient`
    with its own HTTP session
    (no cookies, no proxy from the environment) while the application runs. ``pending`` keeps
    the logins in flight (the records database on a node, so a login survives a restart)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            http = AiohttpEidHttp(session, timeout_s=config.http_timeout_s)
            client = EidClient(
                config, redirect_uri, http, SystemClock(), credentials, pending=pending
            )
            slot.fill(client)
            try:
                yield
            finally:
                slot.empty()

    return ctx

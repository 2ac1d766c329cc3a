"""HTTP API of consultations and invites (docs/protocol.md, "Consultations and invites").

Practitioner routes sit under the access-token middleware; the client's two routes
(``/api/v1/invite/redeem`` and ``/api/v1/invite/verify``) are public: the invite secret or the
verification handle in the POST body is the credential, so it never appears in a URL, a log line
or a Referer. Every response that carries a secret is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fortrolig.core.errors import BadRequest

from .http import json_body, principal
from .invites import (
    CodeSent,
    Consultation,
    InviteService,
    IssuedInvite,
    JoinGrant,
    parse_consultation_request,
)

NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


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


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise BadRequest(f"unknown fields: {sorted(unknown)}", code="bad_field")


def invite_routes(invites: InviteService) -> list[web.RouteDef]:
    """Routes of the consultations API and the client's invite redemption."""

    async def create(request: web.Request) -> web.Response:
        who = principal(request)
        req = parse_consultation_request(await json_body(request))
        consultation, invite = await invites.create_consultation(who.subject, req)
        body = {**_consultation_body(consultation), "invite": _invite_body(invite)}
        return _json(body, status=201)

    async def show(request: web.Request) -> web.Response:
        who = principal(request)
        consultation = await invites.owned(who.subject, request.match_info["consultation_id"])
        return _json(_consultation_body(consultation))

    async def reissue(request: web.Request) -> web.Response:
        who = principal(request)
        data = await json_body(request)
        _only(data, {"send"})
        send = data.get("send", False)
        if not isinstance(send, bool):
            raise BadRequest("send must be a boolean", code="bad_field")
        invite = await invites.reissue(who.subject, request.match_info["consultation_id"], send)
        return _json(_invite_body(invite), status=201)

    async def redeem(request: web.Request) -> web.Response:
        data = await json_body(request)
        _only(data, {"invite"})
        result = await invites.redeem(data.get("invite"))
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
        _only(data, {"handle", "code"})
        grant = await invites.verify_code(data.get("handle"), data.get("code"))
        return _json(_grant_body(grant))

    return [
        web.post("/api/v1/consultations", create),
        web.get("/api/v1/consultations/{consultation_id}", show),
        web.post("/api/v1/consultations/{consultation_id}/invites", reissue),
        web.post("/api/v1/invite/redeem", redeem),
        web.post("/api/v1/invite/verify", verify),
    ]

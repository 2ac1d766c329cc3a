"""HTTP API of the signaling side: rooms and join tokens, plus the node's one HTTP error mapping.

Authentication happens in :func:`auth_middleware` (a Bearer access token becomes a
:class:`Principal` on the request); authorization happens in the domain (room ownership).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from fortrolig.core.errors import (
    BadRequest,
    Forbidden,
    FortroligError,
    RateLimited,
    Unauthenticated,
)
from fortrolig.core.http_body import only_fields, read_json_object
from fortrolig.core.log_limit import RateLimitedLog
from fortrolig.core.principal import Principal

from .auth import Role, TokenKind
from .protocol import NAME_MAX
from .records import RoomRecord, check_room_owner, parse_force_relay, parse_regions
from .service import SignalingService

log = logging.getLogger(__name__)
# Any client can cause a server error line (that is what makes it a bug): bounded rate.
limited_log = RateLimitedLog(log)

PRINCIPAL = web.RequestKey("fortrolig.principal", Principal)
# The client's side of invites: no access token (the invite secret or the verification handle in
# the body is the credential).
PUBLIC_API_PREFIXES = ("/api/v1/invite/", "/api/recordings/play/")
"""API paths without a Bearer token: invite links, and recording playback URLs (whose sealed
ticket is the credential: a ``<video>`` element cannot send a header)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store"}
HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


def error_response(exc: FortroligError) -> web.Response:
    """The one HTTP error mapping: the error's status and ``{"error": {"code", "message"}}``,
    for every route of the node (signaling, invites, accounts, journal, billing).

    A server fault keeps its code but not its message, which may name internals (paths, record
    ids); the message is in the log. A rate limit with a known delay carries ``Retry-After``.
    No error is cached (``Cache-Control: no-store``): some answer credential requests.
    """
    message = "internal error" if exc.fault == "server" else exc.message
    error: dict[str, Any] = {"code": exc.code, "message": message}
    details = getattr(exc, "details", None)  # e.g. attempts_left of a wrong e-mail code
    if isinstance(details, dict) and exc.fault != "server":
        error.update({k: val for k, val in details.items() if k not in error})
    headers = dict(NO_STORE)
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    response = web.json_response({"error": error}, status=exc.status, headers=headers)
    if exc.status == 408:  # the rest of a late request would be read as the next one
        response.force_close()
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors → their status and code; anything else → 500 without a traceback."""
    try:
        return await handler(request)
    except FortroligError as exc:
        if exc.fault == "server":
            limited_log.error("server error on %s %s: %r", request.method, request.path, exc)
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        # aiohttp's own API errors (no such route, wrong method) get the documented body too.
        fallback = "internal_error" if exc.status >= 500 else "bad_request"
        code = HTTP_ERROR_CODES.get(exc.status, fallback)
        body = {"error": {"code": code, "message": exc.reason}}
        headers = dict(NO_STORE)
        if "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        return web.json_response(body, status=exc.status, headers=headers)
    except Exception:
        limited_log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(FortroligError("internal error"))


def auth_middleware(
    service: SignalingService,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Verify a Bearer access token on /api/ routes and attach the principal."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/") and not request.path.startswith(PUBLIC_API_PREFIXES):
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthenticated("a Bearer access token is required", code="token_missing")
            claims = await service.verifier.verify(token.strip(), TokenKind.ACCESS, consume=False)
            request[PRINCIPAL] = Principal(
                subject=claims.sub, role=claims.role.value, issued_at=float(claims.iat)
            )
        return await handler(request)

    return middleware


def _principal(request: web.Request) -> Principal:
    principal = request[PRINCIPAL]
    if principal.role != Role.PRACTITIONER.value:
        raise Forbidden("practitioners only", code="practitioner_only")
    return principal


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty) of at most 16 KiB; ``too_large`` /
    ``bad_json``."""
    return await read_json_object(request, MAX_BODY)


def principal(request: web.Request) -> Principal:
    """The authenticated practitioner of an /api/ request (``practitioner_only`` otherwise)."""
    return _principal(request)


def _optional_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{key} must be an integer", code="bad_field")
    return value


def _short_text(value: object, max_bytes: int) -> bool:
    """A str that is valid Unicode (no lone surrogates) of at most ``max_bytes`` UTF-8 bytes."""
    if not isinstance(value, str):
        return False
    try:
        return len(value.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


def _room_body(room: RoomRecord) -> dict[str, Any]:
    return {
        "room_id": room.id,
        "max_participants": room.max_participants,
        "waiting_room": room.has_waiting_room,
        "regions": list(room.regions),
        "force_relay": room.force_relay,
    }


def room_routes(service: SignalingService, public_url: str) -> list[web.RouteDef]:
    """Routes of the rooms API (see docs/protocol.md, "HTTP API")."""

    async def create_room(request: web.Request) -> web.Response:
        who = _principal(request)
        data = await json_body(request)
        only_fields(data, {"max_participants", "waiting_room", "regions", "force_relay"})
        has_waiting_room = data.get("waiting_room", False)
        if not isinstance(has_waiting_room, bool):
            raise BadRequest("waiting_room must be a boolean", code="bad_field")
        room = await service.create_room(
            who.subject,
            _optional_int(data, "max_participants"),
            has_waiting_room,
            parse_regions(data.get("regions")),
            parse_force_relay(data.get("force_relay")),
        )
        return web.json_response(_room_body(room), status=201)

    async def create_token(request: web.Request) -> web.Response:
        who = _principal(request)
        room = await service.room_record(request.match_info["room_id"])
        check_room_owner(room.owner, who.subject)
        data = await json_body(request)
        only_fields(data, {"role", "name"})
        try:
            role = Role(data.get("role", "client"))
        except ValueError as exc:
            raise BadRequest("role must be client or practitioner", code="bad_field") from exc
        name = data.get("name")
        if name is not None and not _short_text(name, NAME_MAX):
            raise BadRequest(
                f"name must be a string of at most {NAME_MAX} UTF-8 bytes", code="bad_field"
            )
        token, claims = service.issue_join_token(room, role, name)
        url = f"{public_url}/room/{quote(room.id)}#role={role.value}&token={token}"
        body = {"token": token, "expires_at": claims.exp, "url": url}
        return web.json_response(body, status=201)

    async def get_room(request: web.Request) -> web.Response:
        who = _principal(request)
        record = await service.room_record(request.match_info["room_id"])
        check_room_owner(record.owner, who.subject)
        body: dict[str, Any] = _room_body(record)
        room = service.rooms.find(record.id)
        # Who is connected is known on the node serving the room (``served_by``); asked on
        # another node, the lists are empty and ``served_by`` names the node to ask.
        body["participants"] = [
            {"id": x.id, "role": x.role, "name": x.name, "audio": x.audio, "video": x.video}
            for x in (room.participants.values() if room else ())
        ]
        body["waiting"] = [
            {"id": x.id, "name": x.name, "verification": x.verification or "none"}
            for x in (room.waiting.values() if room else ())
        ]
        if room is not None:
            body["served_by"] = service.cluster.node.node_id
        else:
            body["served_by"] = await service.serving_node(record.id)
        return web.json_response(body)

    async def delete_room(request: web.Request) -> web.Response:
        who = _principal(request)
        room = await service.room_record(request.match_info["room_id"])
        check_room_owner(room.owner, who.subject)
        await service.end_room(room.id, "room_ended")
        return web.Response(status=204)

    return [
        web.post("/api/v1/rooms", create_room),
        web.post("/api/v1/rooms/{room_id}/tokens", create_token),
        web.get("/api/v1/rooms/{room_id}", get_room),
        web.delete("/api/v1/rooms/{room_id}", delete_room),
    ]

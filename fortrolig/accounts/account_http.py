"""HTTP routes of practitioner accounts under ``/auth/`` (aiohttp).

Not under ``/api/``: these routes are how a practitioner gets a token, so the node's Bearer-token
middleware must not guard them. Bodies are small JSON objects (unknown fields refused, size
limited); handlers raise :class:`~fortrolig.core.errors.FortroligError` and the application's one
error middleware maps them to ``{"error": {"code", "message"}}``, except ``login_throttled``,
answered here so that it can carry ``Retry-After``. Every response is ``Cache-Control: no-store``
(tokens and TOTP secrets must not be cached by browsers or proxies). No cookies are used, so
there is no ambient credential for cross-site requests to abuse.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from fortrolig.accounts.account_service import AccountService, Session
from fortrolig.accounts.passwords import MAX_PASSWORD_CHARS
from fortrolig.accounts.practitioners import MAX_EMAIL_CHARS, LoginThrottled
from fortrolig.core.errors import BadRequest, PayloadTooLarge

PREFIX: Final = "/auth"
MAX_BODY: Final = 4096
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FIELD: Final = {
    "email": MAX_EMAIL_CHARS + 64,  # room for whitespace; normalisation judges the rest
    "display_name": 400,
    "password": MAX_PASSWORD_CHARS * 4,  # the policy counts characters after normalisation
    "current_password": MAX_PASSWORD_CHARS * 4,
    "new_password": MAX_PASSWORD_CHARS * 4,
    "totp": 16,
    "refresh_token": 200,
}

ClientAddress = Callable[[web.Request], str | None]
"""Returns the client's IP address for throttling (default: the peer of the connection)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def peer_address(request: web.Request) -> str | None:
    """The client's address: the connection's peer, or behind a reverse proxy listed in
    ``server.trusted_proxies`` the client its ``X-Forwarded-For`` names (app/edge.py has
    already rewritten ``request.remote``), so clients do not share the proxy's throttle key."""
    return request.remote


def account_routes(
    service_key: web.AppKey[AccountService], *, client_address: ClientAddress = peer_address
) -> list[web.RouteDef]:
    """The account routes; the service is ``request.app[service_key]``."""
    h = _Handlers(service_key, client_address)
    return [
        web.post(PREFIX + "/signup", _guard(h.signup)),
        web.post(PREFIX + "/totp/enrol", _guard(h.enrol)),
        web.post(PREFIX + "/totp/confirm", _guard(h.confirm)),
        web.post(PREFIX + "/login", _guard(h.login)),
        web.post(PREFIX + "/refresh", _guard(h.refresh)),
        web.post(PREFIX + "/logout", _guard(h.logout)),
        web.post(PREFIX + "/password", _guard(h.password)),
    ]


def _guard(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LoginThrottled as exc:
            body = {"error": {"code": exc.code, "message": exc.message}}
            headers = {**_NO_STORE, "Retry-After": str(exc.retry_after_s)}
            return web.json_response(body, status=exc.status, headers=headers)

    return guarded


async def _body(request: web.Request, fields: frozenset[str]) -> dict[str, str]:
    """The JSON object body: every field in ``fields`` present, a string, and nothing else."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge("request body too large")
    raw = bytearray()
    while len(raw) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge("request body too large")
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body must be JSON", code="bad_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="bad_json")
    unknown = set(body) - fields
    if unknown:
        raise BadRequest(f"unknown fields: {sorted(unknown)}", code="bad_field")
    for name in sorted(fields):
        value = body.get(name)
        if not isinstance(value, str):
            raise BadRequest(f"field {name!r} must be a string", code="bad_field")
        if len(value) > _MAX_FIELD[name]:
            raise BadRequest(f"field {name!r} is too long", code="bad_field")
    return body


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=_NO_STORE)


def session_json(session: Session) -> dict[str, Any]:
    """Tokens as JSON (OAuth-like names; ``expires_at`` is unix seconds)."""
    return {
        "practitioner_id": session.practitioner_id,
        "token_type": "Bearer",
        "access_token": session.access_token,
        "expires_at": session.expires_at,
        "refresh_token": session.refresh_token,
        "refresh_expires_at": session.refresh_expires_at,
    }


_SIGNUP = frozenset({"email", "display_name", "password"})
_CREDENTIALS = frozenset({"email", "password"})
_WITH_CODE = frozenset({"email", "password", "totp"})
_REFRESH = frozenset({"refresh_token"})
_PASSWORD = frozenset({"email", "current_password", "totp", "new_password"})


class _Handlers:
    def __init__(self, key: web.AppKey[AccountService], address: ClientAddress) -> None:
        self._key = key
        self._address = address

    def _svc(self, request: web.Request) -> AccountService:
        return request.app[self._key]

    async def signup(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _SIGNUP)
        result = await self._svc(request).sign_up(
            b["email"], b["display_name"], b["password"], client_ip=self._address(request)
        )
        body = {
            "practitioner_id": result.practitioner_id,
            "email": result.email,
            "display_name": result.display_name,
            "state": result.state.value,
        }
        return _json(body, status=201)

    async def enrol(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _CREDENTIALS)
        enrolment = await self._svc(request).enrol_totp(
            b["email"], b["password"], client_ip=self._address(request)
        )
        return _json({"otpauth_uri": enrolment.otpauth_uri, "secret": enrolment.secret})

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _WITH_CODE)
        state = await self._svc(request).confirm_totp(
            b["email"], b["password"], b["totp"], client_ip=self._address(request)
        )
        return _json({"state": state.value})

    async def login(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _WITH_CODE)
        session = await self._svc(request).login(
            b["email"], b["password"], b["totp"], client_ip=self._address(request)
        )
        return _json(session_json(session))

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _REFRESH)
        return _json(session_json(await self._svc(request).refresh(b["refresh_token"])))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _REFRESH)
        await self._svc(request).logout(b["refresh_token"])
        return web.Response(status=204, headers=_NO_STORE)

    async def password(self, request: web.Request) -> web.StreamResponse:
        b = await _body(request, _PASSWORD)
        await self._svc(request).change_password(
            b["email"],
            b["current_password"],
            b["totp"],
            b["new_password"],
            client_ip=self._address(request),
        )
        return web.Response(status=204, headers=_NO_STORE)

"""HTTP routes of practitioner accounts under ``/auth/`` (aiohttp).

Not under ``/api/``: these routes are how a practitioner gets a token, so the node's Bearer-token
middleware must not guard them. Bodies are small JSON objects (unknown fields refused, size
limited); handlers raise :class:`~fortrolig.core.errors.FortroligError` and the application's one
error middleware maps them to ``{"error": {"code", "message"}}`` (``login_throttled`` with
``Retry-After``). Every response is ``Cache-Control: no-store``
(tokens and TOTP secrets must not be cached by browsers or proxies). No cookies are used, so
there is no ambient credential for cross-site requests to abuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import segno
from aiohttp import web

from fortrolig.accounts.account_service import AccountService, Session
from fortrolig.accounts.onboarding_service import OnboardingService
from fortrolig.accounts.passwords import MAX_PASSWORD_CHARS
from fortrolig.accounts.practitioners import MAX_EMAIL_CHARS
from fortrolig.core.errors import BadRequest
from fortrolig.core.http_body import only_fields, read_json_object

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
    "token": 100,
}

ClientAddress = Callable[[web.Request], str | None]
"""Returns the client's IP address for throttling (default: the peer of the connection)."""


def peer_address(request: web.Request) -> str | None:
    """The client's address: the connection's peer, or behind a reverse proxy listed in
    ``server.trusted_proxies`` the client its ``X-Forwarded-For`` names (app/edge.py has
    already rewritten ``request.remote``), so clients do not share the proxy's throttle key."""
    return request.remote


def account_routes(
    service_key: web.AppKey[AccountService],
    *,
    client_address: ClientAddress = peer_address,
    onboarding_key: web.AppKey[OnboardingService] | None = None,
) -> list[web.RouteDef]:
    """The account routes; the service is ``request.app[service_key]``. With ``onboarding_key``
    a sign-up mails its confirmation link and a confirmed enrolment returns recovery codes and
    a session."""
    h = _Handlers(service_key, client_address, onboarding_key)
    return [
        web.post(PREFIX + "/signup", h.signup),
        web.post(PREFIX + "/totp/enrol", h.enrol),
        web.post(PREFIX + "/totp/confirm", h.confirm),
        web.post(PREFIX + "/login", h.login),
        web.post(PREFIX + "/refresh", h.refresh),
        web.post(PREFIX + "/logout", h.logout),
        web.post(PREFIX + "/password", h.password),
    ]


async def body_fields(request: web.Request, fields: frozenset[str]) -> dict[str, str]:
    """The JSON object body: every field in ``fields`` present, a string, and nothing else."""
    body = await read_json_object(request, MAX_BODY, allow_empty=False)
    only_fields(body, fields)
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
    def __init__(
        self,
        key: web.AppKey[AccountService],
        address: ClientAddress,
        onboarding: web.AppKey[OnboardingService] | None,
    ) -> None:
        self._key = key
        self._address = address
        self._onboarding = onboarding

    def _onb(self, request: web.Request) -> OnboardingService | None:
        return None if self._onboarding is None else request.app[self._onboarding]

    def _svc(self, request: web.Request) -> AccountService:
        return request.app[self._key]

    async def signup(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _SIGNUP)
        result = await self._svc(request).sign_up(
            b["email"], b["display_name"], b["password"], client_ip=self._address(request)
        )
        onboarding = self._onb(request)
        mailed = onboarding is not None and await onboarding.signed_up(result)
        body = {
            "practitioner_id": result.practitioner_id,
            "email": result.email,
            "display_name": result.display_name,
            "state": result.state.value,
            "confirmation_sent": mailed,
        }
        return _json(body, status=201)

    async def enrol(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _CREDENTIALS)
        enrolment = await self._svc(request).enrol_totp(
            b["email"], b["password"], client_ip=self._address(request)
        )
        qr = segno.make(enrolment.otpauth_uri, error="m")
        return _json(
            {
                "otpauth_uri": enrolment.otpauth_uri,
                "secret": enrolment.secret,
                "qr_svg": qr.svg_data_uri(scale=5, border=4, dark="#000", light="#fff"),
            }
        )

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _WITH_CODE)
        onboarding = self._onb(request)
        if onboarding is None:
            state = await self._svc(request).confirm_totp(
                b["email"], b["password"], b["totp"], client_ip=self._address(request)
            )
            return _json({"state": state.value})
        session = await self._svc(request).confirm_totp_and_login(
            b["email"], b["password"], b["totp"], client_ip=self._address(request)
        )
        codes = await onboarding.issue_recovery_codes(session.practitioner_id)
        return _json({"state": "active", "recovery_codes": codes, **session_json(session)})

    async def login(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _WITH_CODE)
        session = await self._svc(request).login(
            b["email"], b["password"], b["totp"], client_ip=self._address(request)
        )
        return _json(session_json(session))

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _REFRESH)
        return _json(session_json(await self._svc(request).refresh(b["refresh_token"])))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _REFRESH)
        await self._svc(request).logout(b["refresh_token"])
        return web.Response(status=204, headers=_NO_STORE)

    async def password(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _PASSWORD)
        await self._svc(request).change_password(
            b["email"],
            b["current_password"],
            b["totp"],
            b["new_password"],
            client_ip=self._address(request),
        )
        return web.Response(status=204, headers=_NO_STORE)

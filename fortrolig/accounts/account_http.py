"""HTTP routes of practitioner accounts under ``/auth/`` (aiohttp).

Not under ``/api/``: these routes are how a practitioner gets a token, so the node's Bearer-token
middleware must not guard them. Bodies are small JSON objects (unknown fields refused, size
limited); handlers raise :class:`~fortrolig.core.errors.FortroligError` and the application's one
error middleware maps them to ``{"error": {"code", "message"}}`` (``login_throttled`` with
``Retry-After``). Every response is ``Cache-Control: no-store``
(tokens and TOTP secrets must not be cached by browsers or proxies).

**Browser sessions keep the refresh token in a cookie** (docs/security.md, "Browser login
across tabs"): a request with the header ``X-Fortrolig-Session: cookie`` to login, TOTP confirm
or refresh gets the refresh token as an ``HttpOnly; SameSite=Strict; Path=/auth`` cookie (``Secure``
and the ``__Secure-`` prefix over https) instead of in the JSON, so page scripts never hold it and
every tab of the browser can get its own access token from it. A cookie is an ambient
credential, so the routes that read it (refresh, logout) also require that header (a cross-site
form cannot send it, and a cross-origin ``fetch`` with it needs a CORS preflight that this node
never grants) and an ``Origin`` equal to this node's own; the JSON body form (API clients, the
CLI) works as before and never reads a cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import segno
from aiohttp import web

from fortrolig.accounts.account_service import AccountService, Session
from fortrolig.accounts.onboarding_service import OnboardingService
from fortrolig.accounts.passwords import MAX_PASSWORD_CHARS
from fortrolig.accounts.practitioners import MAX_EMAIL_CHARS, InvalidRefreshToken
from fortrolig.core.errors import BadRequest, Forbidden
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

SESSION_HEADER: Final = "X-Fortrolig-Session"
"""Request header that asks for (and, where a cookie is read, proves) a browser cookie session."""
COOKIE_MODE: Final = "cookie"
COOKIE_NAME: Final = "fortrolig-refresh"
SECURE_COOKIE_NAME: Final = "__Secure-fortrolig-refresh"

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


def cookie_mode(request: web.Request) -> bool:
    """Whether the page asked for a cookie session (header ``X-Fortrolig-Session: cookie``)."""
    return request.headers.get(SESSION_HEADER, "").strip().lower() == COOKIE_MODE


def _cookie_name(request: web.Request) -> str:
    return SECURE_COOKIE_NAME if request.secure else COOKIE_NAME


def check_same_origin(request: web.Request) -> None:
    """Refuse (``403 cross_origin``) a cookie request whose ``Origin`` is not this node's own
    scheme and host. Browsers send ``Origin`` on every POST ``fetch``; a missing one is refused
    too, so only this node's pages can spend the cookie."""
    origin = request.headers.get("Origin", "")
    parts = urlsplit(origin) if origin and origin != "null" else None
    same = (
        parts is not None
        and parts.scheme == request.scheme
        and parts.netloc.lower() == request.host.lower()
        and not parts.path
    )
    if not same:
        raise Forbidden("this request must come from the node's own pages", code="cross_origin")


def _cookie_token(request: web.Request) -> str:
    token = request.cookies.get(_cookie_name(request), "")
    if not token or len(token) > _MAX_FIELD["refresh_token"]:
        raise InvalidRefreshToken("no browser session on this node")
    return token


def _with_cookie(
    request: web.Request, response: web.Response, session: Session | None, now: float = 0.0
) -> None:
    """Set the refresh cookie to ``session``'s refresh token, or clear it (None)."""
    name = _cookie_name(request)
    if session is None:
        response.del_cookie(
            name, path=PREFIX, secure=request.secure, httponly=True, samesite="Strict"
        )
        return
    response.set_cookie(
        name,
        session.refresh_token,
        path=PREFIX,
        max_age=max(0, session.refresh_expires_at - int(now)),
        secure=request.secure,
        httponly=True,
        samesite="Strict",
    )


def _session_response(
    request: web.Request, now: float, session: Session, extra: dict[str, Any] | None = None
) -> web.Response:
    """The session as JSON; in cookie mode the refresh token goes in the cookie instead."""
    body = {**(extra or {}), **session_json(session)}
    if not cookie_mode(request):
        return _json(body)
    del body["refresh_token"]
    body["session"] = COOKIE_MODE
    response = _json(body)
    _with_cookie(request, response, session, now)
    return response


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
        return _session_response(
            request, self._svc(request).now(), session, {"state": "active", "recovery_codes": codes}
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, _WITH_CODE)
        session = await self._svc(request).login(
            b["email"], b["password"], b["totp"], client_ip=self._address(request)
        )
        return _session_response(request, self._svc(request).now(), session)

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        if not cookie_mode(request):
            b = await body_fields(request, _REFRESH)
            return _json(session_json(await self._svc(request).refresh(b["refresh_token"])))
        token = await self._cookie_request(request)
        try:
            session = await self._svc(request).refresh(token)
        except InvalidRefreshToken as exc:
            # A dead cookie is of no use to anyone: clear it with the refusal.
            response = _json({"error": {"code": exc.code, "message": str(exc)}}, status=401)
            _with_cookie(request, response, None)
            return response
        return _session_response(request, self._svc(request).now(), session)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=204, headers=_NO_STORE)
        if not cookie_mode(request):
            b = await body_fields(request, _REFRESH)
            await self._svc(request).logout(b["refresh_token"])
            return response
        try:
            await self._svc(request).logout(await self._cookie_request(request))
        except InvalidRefreshToken:
            pass  # no cookie: nothing to end, and the answer is the same
        _with_cookie(request, response, None)
        return response

    async def _cookie_request(self, request: web.Request) -> str:
        """A cookie request: same origin, an empty body, and the cookie's refresh token."""
        check_same_origin(request)
        body = await read_json_object(request, MAX_BODY, allow_empty=True)
        only_fields(body, frozenset())
        return _cookie_token(request)

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

"""HTTP routes of onboarding and the account's own settings (aiohttp).

- ``/auth/email/confirm``, ``/auth/password/forgot``, ``/auth/password/reset`` carry no Bearer
  token (the link or the e-mail is what the caller has), like the rest of ``/auth/``.
- ``/api/v1/account...`` and ``POST /api/v1/subscription/trial`` are authenticated by the node's
  middleware; the composition root passes a function returning the request's principal, so this
  package never imports signaling.

Bodies are JSON objects with exactly the listed string fields (``400 bad_field``); errors are
:class:`~fortrolig.core.errors.FortroligError` mapped by the application's one middleware.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from fortrolig.accounts.account_http import ClientAddress, body_fields, peer_address
from fortrolig.accounts.onboarding_service import OnboardingService
from fortrolig.accounts.subscription_service import SubscriptionService, status_json
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.http_body import only_fields, read_json_object
from fortrolig.core.principal import Principal

ACCOUNT_PATH: Final = "/api/v1/account"
TRIAL_PATH: Final = "/api/v1/subscription/trial"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}

PrincipalLookup = Callable[[web.Request], Principal | None]
"""Returns the request's authenticated caller, or None when there is none."""


def onboarding_routes(
    key: web.AppKey[OnboardingService],
    subscriptions: web.AppKey[SubscriptionService],
    principal: PrincipalLookup,
    *,
    client_address: ClientAddress = peer_address,
) -> list[web.RouteDef]:
    """Confirmation, forgotten password, the account's settings and the free trial."""
    h = _Handlers(key, subscriptions, principal, client_address)
    return [
        web.post("/auth/email/confirm", h.confirm_email),
        web.post("/auth/password/forgot", h.forgot),
        web.post("/auth/password/reset", h.reset),
        web.get(ACCOUNT_PATH, h.me),
        web.post(ACCOUNT_PATH + "/name", h.name),
        web.post(ACCOUNT_PATH + "/logout-all", h.logout_all),
        web.post(ACCOUNT_PATH + "/second-factor/reset", h.reset_factor),
        web.post(TRIAL_PATH, h.trial),
    ]


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=_NO_STORE)


class _Handlers:
    def __init__(
        self,
        key: web.AppKey[OnboardingService],
        subscriptions: web.AppKey[SubscriptionService],
        principal: PrincipalLookup,
        address: ClientAddress,
    ) -> None:
        self._key = key
        self._subs = subscriptions
        self._principal = principal
        self._address = address

    def _svc(self, request: web.Request) -> OnboardingService:
        return request.app[self._key]

    def _caller(self, request: web.Request) -> str:
        who = self._principal(request)
        if who is None or who.role != "practitioner":
            raise Unauthenticated("a practitioner's access token is required")
        return who.subject

    async def confirm_email(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, frozenset({"token"}))
        done = await self._svc(request).confirm_email(b["token"])
        return _json({"practitioner_id": done.practitioner_id, "email": done.email})

    async def forgot(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, frozenset({"email"}))
        await self._svc(request).forgot_password(b["email"], self._address(request))
        # The same answer whether or not the address has an account.
        return _json({"sent_if_known": True}, status=202)

    async def reset(self, request: web.Request) -> web.StreamResponse:
        b = await body_fields(request, frozenset({"token", "new_password"}))
        await self._svc(request).reset_password(b["token"], b["new_password"])
        return web.Response(status=204, headers=_NO_STORE)

    async def me(self, request: web.Request) -> web.StreamResponse:
        pid = self._caller(request)
        svc = self._svc(request)
        row = await svc.accounts.profile(pid)
        return _json(
            {
                "practitioner_id": row.id,
                "email": row.email,
                "display_name": row.display_name,
                "recovery_codes_left": await svc.recovery_left(pid),
            }
        )

    async def name(self, request: web.Request) -> web.StreamResponse:
        pid = self._caller(request)
        b = await body_fields(request, frozenset({"display_name"}))
        name = await self._svc(request).accounts.set_display_name(pid, b["display_name"])
        return _json({"display_name": name})

    async def logout_all(self, request: web.Request) -> web.StreamResponse:
        pid = self._caller(request)
        body = await read_json_object(request, 64, allow_empty=True)
        only_fields(body, frozenset())
        await self._svc(request).accounts.logout_everywhere(pid)
        return web.Response(status=204, headers=_NO_STORE)

    async def reset_factor(self, request: web.Request) -> web.StreamResponse:
        pid = self._caller(request)
        b = await body_fields(request, frozenset({"password", "totp"}))
        await self._svc(request).accounts.reset_own_second_factor(
            pid, b["password"], b["totp"], client_ip=self._address(request)
        )
        return web.Response(status=204, headers=_NO_STORE)

    async def trial(self, request: web.Request) -> web.StreamResponse:
        pid = self._caller(request)
        body = await read_json_object(request, 64, allow_empty=True)
        only_fields(body, frozenset())
        row = await self._svc(request).accounts.profile(pid)
        subs = request.app[self._subs]
        # The trial's identity is the normalised e-mail: one trial per address in 24 months.
        sub = await subs.start_trial(pid, row.email)
        status = await subs.check(pid)
        return _json(status_json(sub, status), status=201)

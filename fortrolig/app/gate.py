"""Wiring of practitioner accounts and the subscription gate into the node.

- Accounts (login, TOTP, refresh) serve ``/auth/...``; access tokens they mint are ordinary
  ACCESS JWTs. A password change or TOTP reset sets ``revoked_after``: older tokens are refused.
- When billing is enforced (``billing.enforce`` or a webhook secret configured), creating a room
  or a join token needs session access, every join and reconnect re-checks the room owner, the
  journal API needs at least export access, tokens issued before a suspension are refused, and a
  sweep ends the live rooms of any practitioner who lost session access within
  ``billing.sweep_interval_s`` (default 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from fortrolig.accounts.account_http import account_routes
from fortrolig.accounts.account_service import (
    AccountService,
    LockoutPolicy,
    open_accounts,
    purge_loop,
)
from fortrolig.accounts.onboarding import Mailer
from fortrolig.accounts.onboarding_http import onboarding_routes
from fortrolig.accounts.onboarding_service import OnboardingService
from fortrolig.accounts.onboarding_store import open_onboarding_store
from fortrolig.accounts.practitioners import BackoffPolicy
from fortrolig.accounts.subscription import Access
from fortrolig.accounts.subscription_http import subscription_routes
from fortrolig.accounts.subscription_service import SubscriptionService, open_subscriptions
from fortrolig.core.clock import SystemClock
from fortrolig.core.config import Config, read_secret_file
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.principal import Principal
from fortrolig.core.slot import Slot
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from fortrolig.signaling.http import PRINCIPAL
from fortrolig.signaling.service import AccessGate, SignalingService

log = logging.getLogger(__name__)

ACCOUNTS_KEY = web.AppKey("accounts", AccountService)
SUBSCRIPTIONS_KEY = web.AppKey("subscriptions", SubscriptionService)
ONBOARDING_KEY = web.AppKey("onboarding", OnboardingService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AccessMinter:
    """Lets the accounts package mint ACCESS tokens without importing signaling."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self._issuer = issuer

    def mint_access(self, subject: str, ttl_s: int) -> tuple[str, int]:
        token, claims = self._issuer.mint(TokenKind.ACCESS, subject, Role.PRACTITIONER, ttl_s=ttl_s)
        return token, claims.exp


def gate_routes() -> list[web.AbstractRouteDef]:
    """``/auth/...`` (accounts), ``/billing/webhook`` and ``/api/v1/subscription``."""
    routes: list[web.AbstractRouteDef] = []
    routes += account_routes(ACCOUNTS_KEY, onboarding_key=ONBOARDING_KEY)
    routes += subscription_routes(SUBSCRIPTIONS_KEY, lambda r: r.get(PRINCIPAL))
    routes += onboarding_routes(ONBOARDING_KEY, SUBSCRIPTIONS_KEY, lambda r: r.get(PRINCIPAL))
    return routes


def lockout_policy(config: Config) -> LockoutPolicy:
    """Backoff of failed sign-ins per account, (account, address) and address from config."""
    a = config.accounts
    backoff = BackoffPolicy(threshold=a.lockout_threshold, base_s=a.lockout_base_s)
    return LockoutPolicy(account=backoff, address=backoff)


def gate_ctx(
    config: Config,
    issuer: TokenIssuer,
    signaling: SignalingService,
    access_gate: Slot[AccessGate],
    mailer: Mailer | None = None,
    public_url: str = "",
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open accounts and subscriptions (one database), start their background tasks; while
    billing is enforced, ``access_gate`` (the signaling service's) checks room owners.
    ``send_mail`` (the node's SMTP mailer, when configured) sends lockout alerts."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        data = config.server.data_dir
        url = config.accounts.database_url or None
        # Confirmation flags, link digests, recovery codes: beside the accounts (same database
        # when it is PostgreSQL; its own file in the data directory on SQLite).
        onboarding_store = open_onboarding_store(data, url)
        accounts = await open_accounts(
            data,
            AccessMinter(issuer),
            database_url=url,
            keyring_path=config.accounts.keyring_path,
            access_ttl_s=config.auth.access_token_ttl_s,
            lockout=lockout_policy(config),
            send_mail=mailer.send if mailer is not None else None,
            onboarding=onboarding_store,
            require_confirmation=mailer is not None,
        )
        secrets = [read_secret_file(Path(p)) for p in config.billing.webhook_secret_files]
        subs = await open_subscriptions(data, database_url=url, webhook_secrets=secrets)
        app[ACCOUNTS_KEY] = accounts
        app[SUBSCRIPTIONS_KEY] = subs
        clock = SystemClock()
        app[ONBOARDING_KEY] = OnboardingService(
            accounts, onboarding_store, mailer, clock, public_url
        )
        tasks = [asyncio.get_running_loop().create_task(purge_loop(accounts))]
        if config.billing.enforced:
            access_gate.fill(lambda owner: _require_sessions(subs, owner))
            tasks.append(
                asyncio.get_running_loop().create_task(
                    _sweep(subs, signaling, config.billing.sweep_interval_s)
                )
            )
        try:
            yield
        finally:
            access_gate.empty()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await subs.close()
            await accounts.close()

    return ctx


async def _require_sessions(subs: SubscriptionService, owner: str) -> None:
    await subs.require_sessions(owner)  # raises 403 subscription_required


async def _sweep(subs: SubscriptionService, signaling: SignalingService, interval: float) -> None:
    """End the live rooms of practitioners who lost session access (suspension, expiry)."""
    while True:
        await asyncio.sleep(interval)
        for owner in signaling.room_owners():
            try:
                status = await subs.check(owner)
                if status.access != Access.SESSIONS:
                    n = await signaling.end_rooms_of(owner, "subscription_" + status.reason)
                    log.warning("ended %d room(s) of %s: %s", n, owner, status.reason)
            except Exception:
                log.exception("subscription sweep failed for %s", owner)


def gate_middleware(
    config: Config,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """After authentication: refuse revoked tokens and apply the subscription gate on /api/."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        who: Principal | None = request.get(PRINCIPAL)
        if who is not None:
            await _check_revoked(request.app, who)
            if config.billing.enforced:
                await _check_subscription(request, who)
        return await handler(request)

    return middleware


def export_check(config: Config) -> Callable[[web.Request, str], Awaitable[None]]:
    """The subscription rule for requests that carry no token (recording playback URLs): the
    practitioner must still have export access (export-only plays, suspended does not)."""

    async def check(request: web.Request, practitioner_id: str) -> None:
        if config.billing.enforced:
            await request.app[SUBSCRIPTIONS_KEY].require_export(practitioner_id)

    return check


async def _check_revoked(app: web.Application, who: Principal) -> None:
    iat = who.issued_at or 0.0
    revoked = await app[ACCOUNTS_KEY].revoked_after(who.subject)
    if revoked is not None and iat < revoked:
        raise Unauthenticated("this token was issued before a revocation", code="token_revoked")
    if await app[SUBSCRIPTIONS_KEY].token_revoked(who.subject, datetime.fromtimestamp(iat, UTC)):
        raise Unauthenticated("this token was issued before a suspension", code="token_revoked")


async def _check_subscription(request: web.Request, who: Principal) -> None:
    if who.role != Role.PRACTITIONER.value:
        return
    subs = request.app[SUBSCRIPTIONS_KEY]
    path = request.path
    if path.startswith("/api/journal"):
        await subs.require_export(who.subject)
    elif path.startswith(("/api/v1/rooms", "/api/v1/consultations")) and request.method == "POST":
        await subs.require_sessions(who.subject)

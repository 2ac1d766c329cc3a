"""Onboarding flows: confirmation mail after sign-up, recovery codes, forgotten password.

Transport-free, like :class:`~fortrolig.accounts.account_service.AccountService`, which it uses
for everything that touches passwords and sessions. Links are built on the node's public URL and
carry their token in the fragment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fortrolig.accounts.account_service import AccountService, SignUpResult
from fortrolig.accounts.onboarding import (
    CONFIRM_TTL_S,
    PURPOSE_CONFIRM,
    PURPOSE_RESET,
    RESET_TTL_S,
    InvalidLink,
    Mailer,
    confirm_email,
    link_hash,
    new_link_token,
    new_recovery_codes,
    normalize_recovery_code,
    plausible_link_token,
    recovery_hash,
    reset_email,
)
from fortrolig.accounts.onboarding_store import OnboardingStore
from fortrolig.accounts.passwords import check_password_policy
from fortrolig.accounts.practitioners import InvalidEmail, normalize_email
from fortrolig.core.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """An e-mail address confirmed by its link."""

    practitioner_id: str
    email: str


class OnboardingService:
    """Confirmation and reset links (single use, hashed at rest, expiring), recovery codes."""

    def __init__(
        self,
        accounts: AccountService,
        store: OnboardingStore,
        mailer: Mailer | None,
        clock: Clock,
        base_url: str,
    ) -> None:
        self.accounts = accounts
        self._store = store
        self._mailer = mailer
        self._clock = clock
        self._base = base_url.rstrip("/")

    @property
    def mails(self) -> bool:
        """Whether this node can send mail (and therefore demands confirmation)."""
        return self._mailer is not None

    async def signed_up(self, result: SignUpResult) -> bool:
        """Send the confirmation link of a new account; whether a mail went out."""
        if self._mailer is None:
            return False
        token = await self._link(result.practitioner_id, PURPOSE_CONFIRM, CONFIRM_TTL_S)
        subject, body = confirm_email(f"{self._base}/confirm#{token}")
        await self._mailer.send(result.email, subject, body)
        return True

    async def confirm_email(self, token: str) -> Confirmed:
        """Spend a confirmation link; ``invalid_link`` if unknown, used or expired."""
        pid = await self._spend(token, PURPOSE_CONFIRM)
        row = await self.accounts.profile(pid)
        await self.accounts.mark_confirmed(pid)
        log.info("practitioner %s confirmed the e-mail address", pid)
        return Confirmed(pid, row.email)

    async def forgot_password(self, email: str, client_ip: str | None) -> None:
        """Mail a reset link when the address has an account. Says nothing either way (the
        caller answers 202 always); throttled per e-mail and per client address."""
        await self.accounts.throttle_request("reset", email, client_ip)
        try:
            address = normalize_email(email)
        except InvalidEmail:
            return
        row = await self.accounts.store.find_by_email(address)
        if row is None or self._mailer is None:
            return
        token = await self._link(row.id, PURPOSE_RESET, RESET_TTL_S)
        subject, body = reset_email(f"{self._base}/reset#{token}")
        await self._mailer.send(row.email, subject, body)

    async def reset_password(self, token: str, new_password: str) -> None:
        """Spend a reset link and set the new password (policy checked before the link is
        spent, so a refused password leaves the link usable). Every session ends; the second
        factor stays."""
        if not plausible_link_token(token):
            raise InvalidLink("this link is not valid (used, expired or incomplete)")
        probe = await self._peek_policy(token, new_password)
        pid = await self._spend(token, PURPOSE_RESET)
        if pid != probe:
            raise InvalidLink("this link is not valid (used, expired or incomplete)")
        await self.accounts.set_password_by_link(pid, new_password)

    async def issue_recovery_codes(self, practitioner_id: str) -> list[str]:
        """A fresh set of recovery codes (replacing any earlier set), shown once."""
        codes = new_recovery_codes()
        digests = []
        for code in codes:
            normalized = normalize_recovery_code(code)
            assert normalized is not None
            digests.append(recovery_hash(practitioner_id, normalized))
        await self._store.replace_recovery(practitioner_id, digests, self._clock.now())
        return codes

    async def recovery_left(self, practitioner_id: str) -> int:
        """Unused recovery codes of the account."""
        return await self._store.recovery_left(practitioner_id)

    async def _link(self, practitioner_id: str, purpose: str, ttl_s: int) -> str:
        token = new_link_token()
        now = self._clock.now()
        await self._store.add_link(link_hash(token), purpose, practitioner_id, now, now + ttl_s)
        return token

    async def _spend(self, token: str, purpose: str) -> str:
        if not plausible_link_token(token):
            raise InvalidLink("this link is not valid (used, expired or incomplete)")
        pid = await self._store.spend_link(link_hash(token), purpose, self._clock.now())
        if pid is None:
            raise InvalidLink("this link is not valid (used, expired or incomplete)")
        return pid

    async def _peek_policy(self, token: str, new_password: str) -> str:
        pid = await self._store.link_owner(link_hash(token), PURPOSE_RESET, self._clock.now())
        if pid is None:
            raise InvalidLink("this link is not valid (used, expired or incomplete)")
        row = await self.accounts.profile(pid)
        check_password_policy(new_password, row.email)
        return pid

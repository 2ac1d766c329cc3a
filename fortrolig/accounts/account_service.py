"""Practitioner accounts: sign-up, TOTP enrolment, login, refresh, logout, password change.

The service is transport-free (the HTTP routes and the admin CLI call it). It never imports the
token machinery of ``signaling``: the composition root passes an :class:`AccessTokenMinter`.

Authentication paths share one shape (:meth:`AccountService._authenticate`): count the attempt
under the e-mail's and the client address's throttle keys (refused with ``login_throttled`` while
a backoff runs), verify the password (against a dummy hash when the e-mail is unknown, so that
timing tells nothing), then the TOTP code, spending its time step atomically. Every failure is the
same ``invalid_credentials``; success clears the counters.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar

from fortrolig.accounts.account_store import AccountStore, open_account_store
from fortrolig.accounts.onboarding import EmailUnconfirmed, normalize_recovery_code, recovery_hash
from fortrolig.accounts.onboarding_store import OnboardingStore
from fortrolig.accounts.passwords import (
    DEFAULT_PARAMETERS,
    Argon2Parameters,
    PasswordHasher,
    WeakPassword,
    check_password_policy,
)
from fortrolig.accounts.practitioners import (
    ACCESS_TTL_S,
    REFRESH_TTL_S,
    AccountNotFound,
    AccountState,
    BackoffPolicy,
    EnrolmentRequired,
    InvalidCredentials,
    InvalidEmail,
    InvalidRefreshToken,
    LoginThrottled,
    NoPendingEnrolment,
    PractitionerRow,
    RefreshVerdict,
    ThrottleKey,
    email_throttle_key,
    ip_throttle_key,
    lockout_email,
    new_refresh_token,
    normalize_display_name,
    normalize_email,
    pair_throttle_key,
    plausible_refresh_token,
    refresh_token_hash,
)
from fortrolig.accounts.totp import (
    KeyringSealer,
    SecretSealer,
    matching_step,
    new_secret,
    provisioning_uri,
    secret_base32,
)
from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import Clock, SystemClock
from fortrolig.core.errors import ConfigError
from fortrolig.core.ids import new_id
from fortrolig.core.log_limit import RateLimitedLog

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)  # strangers decide how often an alert fails
T = TypeVar("T")

DB_FILE: Final = "accounts.db"
KEYRING_FILE: Final = "keys/accounts-keyring.json"
OTPAUTH_ISSUER: Final = "Fortrolig"
PURGE_KEEP_S: Final = 30 * 86_400.0
"""Dead refresh families stay this long after expiry/revocation (reuse is still recognised)."""


SendMail = Callable[[str, str, str], Awaitable[None]]
"""Sends one plain-text e-mail: ``(to, subject, body)`` (the app wires it to its SMTP mailer)."""


class AccessTokenMinter(Protocol):
    """Issues practitioner ACCESS tokens (the app wires it to signaling's TokenIssuer)."""

    def mint_access(self, subject: str, ttl_s: int) -> tuple[str, int]:
        """Return ``(token, expires_at)`` for a practitioner access token of ``ttl_s`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Backoff per account (e-mail), per client address for logins, and per address for sign-up."""

    account: BackoffPolicy = field(default_factory=BackoffPolicy)
    address: BackoffPolicy = field(default_factory=BackoffPolicy)
    signup_address: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(threshold=10))


@dataclass(frozen=True, slots=True)
class SignUpResult:
    """A new account, waiting for its second factor."""

    practitioner_id: str
    email: str
    display_name: str
    state: AccountState


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What the authenticator app needs: the URI (for a QR code) and the base32 secret."""

    otpauth_uri: str
    secret: str


@dataclass(frozen=True, slots=True)
class Session:
    """Tokens after login or refresh. Times are unix seconds."""

    practitioner_id: str
    access_token: str
    expires_at: int
    refresh_token: str
    refresh_expires_at: int


@dataclass(frozen=True, slots=True)
class _Verified:
    row: PractitionerRow
    keys: list[str]
    account_locked: float = 0.0  # the account's own backoff still runs (seconds left)


class AccountService:
    """Practitioner accounts on an :class:`AccountStore`.

    ``hash_parameters`` below the Argon2 baseline are refused unless ``allow_weak_hashing``
    (tests). ``minter`` may be None for administrator commands, which issue no tokens.
    """

    def __init__(
        self,
        store: AccountStore,
        sealer: SecretSealer,
        minter: AccessTokenMinter | None,
        clock: Clock,
        *,
        access_ttl_s: int = ACCESS_TTL_S,
        refresh_ttl_s: int = REFRESH_TTL_S,
        hash_parameters: Argon2Parameters = DEFAULT_PARAMETERS,
        allow_weak_hashing: bool = False,
        lockout: LockoutPolicy = LockoutPolicy(),
        max_parallel_hashes: int = 2,
        otpauth_issuer: str = OTPAUTH_ISSUER,
        send_mail: SendMail | None = None,
        onboarding: OnboardingStore | None = None,
        require_confirmation: bool = False,
    ) -> None:
        if not hash_parameters.meets_baseline() and not allow_weak_hashing:
            raise ConfigError("Argon2 parameters are below the baseline (m=19 MiB, t=2, p=1)")
        if access_ttl_s < 1 or refresh_ttl_s <= access_ttl_s:
            raise ConfigError("need 1 <= access_ttl_s < refresh_ttl_s")
        self.store = store
        self._sealer = sealer
        self._minter = minter
        self._clock = clock
        self._access_ttl = access_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._hasher = PasswordHasher(hash_parameters)
        self._lockout = lockout
        self._issuer = otpauth_issuer
        self._hash_slots = asyncio.Semaphore(max_parallel_hashes)
        self._dummy_hash = ""
        self._send_mail = send_mail
        # Confirmation flags and recovery codes; confirmation is demanded only where mail can
        # be sent (a node without SMTP could never confirm anyone).
        self._onboarding = onboarding
        self._require_confirmation = require_confirmation and onboarding is not None

    async def start(self) -> None:
        """Open the store (migrating it) and prepare the dummy hash."""
        await self.store.open()
        if self._onboarding is not None:
            await self._onboarding.open()
        self._dummy_hash = await self._in_thread(self._hasher.dummy_hash)

    async def close(self) -> None:
        """Close the store; idempotent."""
        await self.store.close()
        if self._onboarding is not None:
            await self._onboarding.close()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        # Argon2 costs ~64 MiB and ~150 ms per call: bound how many run at once.
        async with self._hash_slots:
            return await asyncio.to_thread(fn)

    # --- sign-up and enrolment -----------------------------------------------------------------

    async def sign_up(
        self, email: str, display_name: str, password: str, *, client_ip: str | None = None
    ) -> SignUpResult:
        """Create an account that must enrol its second factor before it can log in.

        Raises ``invalid_email``, ``invalid_display_name``, ``weak_password`` or ``email_taken``.
        Sign-ups count under the client address's own throttle key (never cleared by success):
        ``email_taken`` reveals that an address has an account, so probing it is rate-limited.
        """
        address = normalize_email(email)
        name = normalize_display_name(display_name)
        check_password_policy(password, address)
        keys = self._keys(None, client_ip, self._lockout.signup_address, "signup")
        await self._register(keys)
        password_hash = await self._in_thread(lambda: self._hasher.hash(password))
        row = PractitionerRow(
            id=new_id("prac"),
            email=address,
            display_name=name,
            password_hash=password_hash,
            totp_sealed=None,
            totp_enrolled=False,
            totp_last_step=None,
            created_at=self._clock.now(),
            revoked_after=None,
        )
        await self.store.create_practitioner(row)
        log.info("practitioner account %s created", row.id)
        return SignUpResult(row.id, row.email, row.display_name, row.state)

    async def enrol_totp(
        self, email: str, password: str, *, client_ip: str | None = None
    ) -> TotpEnrolment:
        """Start (or restart) TOTP enrolment; only before the first code is confirmed.

        Once enrolled, this answers ``invalid_credentials`` like a wrong password (and counts as
        a failure): a distinct answer would make this route a password oracle that skips the
        second factor. Re-enrolment needs an administrator's :meth:`reset_totp`.
        """
        verified = self._second_factor_not_needed(
            await self._check_password(email, password, client_ip)
        )
        row = verified.row
        if row.totp_enrolled:
            raise InvalidCredentials()
        if self._require_confirmation and not await self._confirmed(row.id):
            await self.store.clear_attempts(verified.keys)
            raise EmailUnconfirmed("confirm your e-mail address first (the link in our mail)")
        secret = new_secret()
        if not await self.store.set_pending_totp(row.id, self._sealer.seal(row.id, secret)):
            raise InvalidCredentials()  # confirmed concurrently
        await self.store.clear_attempts(verified.keys)
        return TotpEnrolment(
            provisioning_uri(secret, row.email, self._issuer), secret_base32(secret)
        )

    async def confirm_totp(
        self, email: str, password: str, code: str, *, client_ip: str | None = None
    ) -> AccountState:
        """Finish enrolment with the first code from the app; the account becomes active.

        On an enrolled account this is ``invalid_credentials``, as in :meth:`enrol_totp`.
        """
        await self._confirm(email, password, code, client_ip)
        return AccountState.ACTIVE

    async def confirm_totp_and_login(
        self, email: str, password: str, code: str, *, client_ip: str | None = None
    ) -> Session:
        """:meth:`confirm_totp`, then a session as after a login (the code's step is spent)."""
        row = await self._confirm(email, password, code, client_ip)
        return await self._start_session(row.id)

    async def _confirm(
        self, email: str, password: str, code: str, client_ip: str | None
    ) -> PractitionerRow:
        verified = self._second_factor_not_needed(
            await self._check_password(email, password, client_ip)
        )
        row = verified.row
        if row.totp_enrolled:
            raise InvalidCredentials()
        if row.totp_sealed is None:
            raise NoPendingEnrolment("start the enrolment first (POST /auth/totp/enrol)")
        secret = self._sealer.open(row.id, row.totp_sealed)
        step = matching_step(secret, code, self._clock.now())
        if step is None or not await self.store.confirm_totp(row.id, row.totp_sealed, step):
            raise InvalidCredentials()
        await self.store.clear_attempts(verified.keys)
        log.info("practitioner account %s enrolled its second factor", row.id)
        return row

    # --- login, refresh, logout ----------------------------------------------------------------

    async def login(
        self, email: str, password: str, code: str, *, client_ip: str | None = None
    ) -> Session:
        """Password and TOTP code → an access token and a new refresh family."""
        row = await self._authenticate(email, password, code, client_ip)
        return await self._start_session(row.id)

    async def _start_session(self, practitioner_id: str) -> Session:
        minter = self._require_minter()
        now = self._clock.now()
        refresh = new_refresh_token()
        expires = now + self._refresh_ttl
        await self.store.start_family(
            new_id("rf"), practitioner_id, refresh_token_hash(refresh), now, expires
        )
        token, access_expires = minter.mint_access(practitioner_id, self._access_ttl)
        return Session(practitioner_id, token, access_expires, refresh, math.floor(expires))

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate a refresh token: a new access token and the family's next refresh token.

        Presenting a token that was already rotated revokes its whole family (someone holds a
        copy), and both holders must log in again.
        """
        minter = self._require_minter()
        if not plausible_refresh_token(refresh_token):
            raise InvalidRefreshToken()
        successor = new_refresh_token()
        outcome = await self.store.rotate_refresh(
            refresh_token_hash(refresh_token), refresh_token_hash(successor), self._clock.now()
        )
        if outcome.verdict is RefreshVerdict.REUSED:
            log.warning("refresh token reuse for %s: session revoked", outcome.practitioner_id)
        if outcome.verdict is not RefreshVerdict.ROTATE or outcome.practitioner_id is None:
            raise InvalidRefreshToken()
        token, access_expires = minter.mint_access(outcome.practitioner_id, self._access_ttl)
        return Session(
            outcome.practitioner_id,
            token,
            access_expires,
            successor,
            math.floor(outcome.family_expires_at),
        )

    async def logout(self, refresh_token: str) -> None:
        """End the session (refresh family) the token belongs to; unknown tokens are ignored."""
        if plausible_refresh_token(refresh_token):
            await self.store.revoke_family_of(refresh_token_hash(refresh_token), self._clock.now())

    async def change_password(
        self,
        email: str,
        current_password: str,
        code: str,
        new_password: str,
        *,
        client_ip: str | None = None,
    ) -> None:
        """Replace the password (current password and TOTP required) and end every session.

        Access tokens issued before now are to be refused (:meth:`revoked_after`).
        """
        row = await self._authenticate(email, current_password, code, client_ip)
        check_password_policy(new_password, row.email)
        if new_password == current_password:
            raise WeakPassword("the new password must differ from the current one")
        new_hash = await self._in_thread(lambda: self._hasher.hash(new_password))
        now = self._clock.now()
        if not await self.store.change_password(
            row.id, row.password_hash, new_hash, math.floor(now), now
        ):
            raise InvalidCredentials()  # changed concurrently: the "current" one is not any more
        log.info("practitioner %s changed the password; sessions revoked", row.id)

    # --- the account in the browser (settings, reset by link) -----------------------------

    async def profile(self, practitioner_id: str) -> PractitionerRow:
        """The account of an authenticated practitioner; ``account_not_found`` if it is gone."""
        row = await self.store.get_practitioner(practitioner_id)
        if row is None:
            raise AccountNotFound("no such account")
        return row

    async def set_display_name(self, practitioner_id: str, display_name: str) -> str:
        """Replace the display name (``invalid_display_name`` refused); the stored name."""
        name = normalize_display_name(display_name)
        if not await self.store.set_display_name(practitioner_id, name):
            raise AccountNotFound("no such account")
        return name

    async def logout_everywhere(self, practitioner_id: str) -> None:
        """End every session of the account: refresh families revoked, access tokens refused."""
        row = await self.profile(practitioner_id)
        now = self._clock.now()
        # The same hash compare-and-set: only the cut-off and the revocation change.
        await self.store.change_password(
            row.id, row.password_hash, row.password_hash, math.floor(now), now
        )
        log.info("practitioner %s logged out everywhere", row.id)

    async def set_password_by_link(self, practitioner_id: str, new_password: str) -> None:
        """A password chosen after a reset link: policy checked, every session ended. The
        second factor is untouched, so logging in still needs a TOTP or recovery code."""
        row = await self.profile(practitioner_id)
        check_password_policy(new_password, row.email)
        new_hash = await self._in_thread(lambda: self._hasher.hash(new_password))
        now = self._clock.now()
        if not await self.store.change_password(
            row.id, row.password_hash, new_hash, math.floor(now), now
        ):
            raise InvalidCredentials()  # changed concurrently
        log.info("practitioner %s set a new password by a reset link; sessions revoked", row.id)

    async def reset_own_second_factor(
        self, practitioner_id: str, password: str, code: str, *, client_ip: str | None = None
    ) -> None:
        """The practitioner replaces their own second factor (password and a current code or
        recovery code): the secret and recovery codes are forgotten, every session ends, and
        the account enrols afresh (:meth:`enrol_totp`)."""
        row = await self.profile(practitioner_id)
        await self._authenticate(row.email, password, code, client_ip)
        now = self._clock.now()
        await self.store.reset_totp(row.id, math.floor(now), now)
        if self._onboarding is not None:
            await self._onboarding.replace_recovery(row.id, [], now)
        log.warning("practitioner %s reset their own second factor", row.id)

    async def mark_confirmed(self, practitioner_id: str) -> None:
        """Record the account's e-mail as confirmed (its link, or an administrator's word)."""
        if self._onboarding is not None:
            await self._onboarding.mark_confirmed(practitioner_id, self._clock.now())

    async def throttle_request(self, purpose: str, email: str, client_ip: str | None) -> None:
        """Count a mail-sending request (reset, resend) under the e-mail's and the address's
        keys, never cleared: ``login_throttled`` once they run hot."""
        try:
            address: str | None = normalize_email(email)
        except InvalidEmail:
            address = None
        keys = self._keys(address, client_ip, self._lockout.signup_address, purpose)
        await self._register(keys)

    async def revoked_after(self, practitioner_id: str) -> float | None:
        """Whole unix seconds: refuse this practitioner's access tokens with ``iat`` below it."""
        return await self.store.revoked_after(practitioner_id)

    async def purge(self) -> int:
        """Remove long-dead refresh families and stale throttle counters (a periodic task)."""
        return await self.store.purge(self._clock.now(), PURGE_KEEP_S)

    # --- administrators ------------------------------------------------------------------------

    async def reset_totp(self, email: str) -> str:
        """Forget an account's second factor and end its sessions; returns the account id."""
        row = await self.store.find_by_email(normalize_email(email))
        if row is None:
            raise AccountNotFound("no account with this e-mail")
        now = self._clock.now()
        await self.store.reset_totp(row.id, math.floor(now), now)
        if self._onboarding is not None:
            await self._onboarding.replace_recovery(row.id, [], now)
        log.warning("second factor of %s reset by an administrator", row.id)
        return row.id

    # --- the shared checks ---------------------------------------------------------------------

    async def _authenticate(
        self, email: str, password: str, code: str, client_ip: str | None
    ) -> PractitionerRow:
        verified = await self._check_password(email, password, client_ip)
        row = verified.row
        if not row.totp_enrolled or row.totp_sealed is None:
            self._second_factor_not_needed(verified)
            # The password was right and is this account's only factor so far.
            await self.store.clear_attempts(verified.keys)
            raise EnrolmentRequired("enrol the second factor first (POST /auth/totp/enrol)")
        if not await self._second_factor(row, code):
            raise self._refusal(verified.account_locked)
        await self.store.clear_attempts(verified.keys)
        await self._maybe_rehash(row, password)
        return row

    async def _second_factor(self, row: PractitionerRow, code: str) -> bool:
        """A fresh TOTP code, or else one unused recovery code (spent by this call)."""
        assert row.totp_sealed is not None
        secret = self._sealer.open(row.id, row.totp_sealed)
        step = matching_step(secret, code, self._clock.now())
        if step is not None:
            return await self.store.consume_totp_step(row.id, step)
        recovery = normalize_recovery_code(code)
        if recovery is None or self._onboarding is None:
            return False
        digest = recovery_hash(row.id, recovery)
        if not await self._onboarding.spend_recovery(row.id, digest, self._clock.now()):
            return False
        log.warning("practitioner %s logged in with a recovery code", row.id)
        return True

    async def _confirmed(self, practitioner_id: str) -> bool:
        return self._onboarding is None or await self._onboarding.is_confirmed(practitioner_id)

    async def _check_password(self, email: str, password: str, client_ip: str | None) -> _Verified:
        """Count the attempt, then verify the password.

        With a client address, a failure locks that address (for every account) and that
        (account, address) pair: those refuse at once. The account's own counter is "soft": while
        its backoff runs, the password and the code are still checked and a login with both right
        passes, from any address not locked itself; anything less is ``login_throttled``. So a
        stranger who fails five times from five addresses locks out those addresses, never the
        owner, and gets no answer that tells a right password from a wrong one. Without an
        address (a Unix socket, the CLI) the account's counter refuses at once.
        """
        try:
            address = normalize_email(email)
        except InvalidEmail:
            address = ""  # still costs one Argon2 verification, like an unknown address
        hard, account = self._login_keys(address or None, client_ip)
        await self._register(hard)
        locked = await self.store.register_attempt([account], self._clock.now()) if account else 0
        row = await self.store.find_by_email(address) if address else None
        stored = row.password_hash if row is not None else self._dummy_hash
        ok = await self._in_thread(lambda: self._hasher.verify(stored, password))
        keys = [k.key for k in hard] + ([account.key] if account else [])
        if row is None or not ok:
            if account is not None and row is not None and not locked:
                await self._alert_on_lock(row, account)
            raise self._refusal(locked)
        return _Verified(row, keys, locked)

    def now(self) -> float:
        """The service's wall-clock time (unix seconds; a fake clock in tests)."""
        return self._clock.now()

    def _login_keys(
        self, email: str | None, client_ip: str | None
    ) -> tuple[list[ThrottleKey], ThrottleKey | None]:
        """The keys that refuse at once, and the account's soft key (None when it is hard)."""
        ip_key = ip_throttle_key(client_ip, "login") if client_ip else None
        if email is None:
            return self._keys(None, client_ip, self._lockout.address, "login"), None
        if ip_key is None:  # no address: the account's counter is all there is
            return [ThrottleKey(email_throttle_key(email), self._lockout.account)], None
        hard = [
            ThrottleKey(pair_throttle_key(email, ip_key), self._lockout.account),
            ThrottleKey(ip_key, self._lockout.address),
        ]
        return hard, ThrottleKey(email_throttle_key(email), self._lockout.account)

    def _second_factor_not_needed(self, verified: _Verified) -> _Verified:
        """Paths that end without a second factor do not pass the account's backoff."""
        if verified.account_locked > 0:
            raise LoginThrottled(verified.account_locked)
        return verified

    def _refusal(self, account_locked: float) -> InvalidCredentials | LoginThrottled:
        return LoginThrottled(account_locked) if account_locked > 0 else InvalidCredentials()

    async def _alert_on_lock(self, row: PractitionerRow, account: ThrottleKey) -> None:
        """E-mail the practitioner when this failure starts the account's backoff (once per
        streak: the counter reaches the threshold only once until a success clears it)."""
        if self._send_mail is None:
            return
        if await self.store.failures(account.key) != account.policy.threshold:
            return
        subject, body = lockout_email()
        try:
            await self._send_mail(row.email, subject, body)
        except Exception as exc:
            limited_log.warning("lockout alert for %s not sent: %s", row.id, type(exc).__name__)
        else:
            log.info("sign-ins of %s locked: the practitioner was alerted", row.id)

    def _keys(
        self, email: str | None, client_ip: str | None, address: BackoffPolicy, purpose: str
    ) -> list[ThrottleKey]:
        keys = []
        if email is not None:
            keys.append(ThrottleKey(email_throttle_key(email), self._lockout.account))
        ip_key = ip_throttle_key(client_ip, purpose) if client_ip else None
        if ip_key is not None:
            keys.append(ThrottleKey(ip_key, address))
        return keys

    async def _register(self, keys: list[ThrottleKey]) -> None:
        if not keys:
            return
        wait = await self.store.register_attempt(keys, self._clock.now())
        if wait > 0:
            raise LoginThrottled(wait)

    async def _maybe_rehash(self, row: PractitionerRow, password: str) -> None:
        if not self._hasher.needs_rehash(row.password_hash):
            return
        new_hash = await self._in_thread(lambda: self._hasher.hash(password))
        if await self.store.replace_password_hash(row.id, row.password_hash, new_hash):
            log.info("password hash of %s upgraded to the current parameters", row.id)

    def _require_minter(self) -> AccessTokenMinter:
        if self._minter is None:
            raise ConfigError("this account service was built without a token minter")
        return self._minter


# --- building one ------------------------------------------------------------------------------


def default_database_url(data_dir: Path) -> str:
    """The embedded default: ``sqlite:///<absolute data_dir>/accounts.db``."""
    return f"sqlite://{(data_dir / DB_FILE).resolve()}"


def default_keyring_path(data_dir: Path) -> Path:
    """``<data_dir>/keys/accounts-keyring.json`` (mode 0600, created on first start)."""
    return data_dir / KEYRING_FILE


async def open_accounts(
    data_dir: Path,
    minter: AccessTokenMinter | None,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    sealer: SecretSealer | None = None,
    clock: Clock | None = None,
    access_ttl_s: int = ACCESS_TTL_S,
    lockout: LockoutPolicy = LockoutPolicy(),
    create: bool = True,
    send_mail: SendMail | None = None,
    onboarding: OnboardingStore | None = None,
    require_confirmation: bool = False,
) -> AccountService:
    """Open (creating and migrating as needed) the account service; ``await close()`` it.

    TOTP secrets are sealed with ``sealer`` when given (e.g. a
    :class:`~fortrolig.accounts.totp.StaticKeySealer` over a key passed in), else with a keyring
    file (``keyring_path``, default in ``data_dir``; created mode 0600 when ``create``; refused
    when group/other-readable).
    """
    if sealer is None:
        path = keyring_path or default_keyring_path(data_dir)
        sealer = KeyringSealer(FileKeyring.open(path, create=create))
    store = open_account_store(database_url or default_database_url(data_dir))
    service = AccountService(
        store,
        sealer,
        minter,
        clock or SystemClock(),
        access_ttl_s=access_ttl_s,
        lockout=lockout,
        send_mail=send_mail,
        onboarding=onboarding,
        require_confirmation=require_confirmation,
    )
    try:
        await service.start()
    except BaseException:
        await service.close()
        raise
    return service


async def purge_loop(service: AccountService, interval_s: float = 3600.0) -> None:
    """Purge every ``interval_s`` until cancelled (an app cleanup_ctx task); errors are logged."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await service.purge()
        except Exception:
            log.exception("account purge failed; retrying in %.0f s", interval_s)

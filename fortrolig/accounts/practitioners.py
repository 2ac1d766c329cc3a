"""Practitioner account rules: pure functions and values, no I/O, no infrastructure library.

E-mail normalisation (one account per practitioner), display names, the account errors with
their stable codes, the login backoff schedule and throttle keys, and the refresh-token rules
(opaque random tokens of which only the SHA-256 is stored; rotation; reuse revokes the family).
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from fortrolig.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from fortrolig.core.ids import random_token

MAX_EMAIL_CHARS: Final = 254
MAX_LOCAL_PART_CHARS: Final = 64
MAX_DISPLAY_NAME_CHARS: Final = 100
REFRESH_TOKEN_PREFIX: Final = "frt_"
"""Makes leaked refresh tokens recognisable to secret scanners and in logs."""
REFRESH_TOKEN_BYTES: Final = 32
"""256 random bits."""
REFRESH_TTL_S: Final = 14 * 86_400
ACCESS_TTL_S: Final = 900


# --- errors ------------------------------------------------------------------------------------


class InvalidCredentials(Unauthenticated):
    """Wrong e-mail, password or code: one error for all, so nothing tells which was wrong."""

    code = "invalid_credentials"

    def __init__(self, message: str = "invalid e-mail, password or code") -> None:
        super().__init__(message)


class LoginThrottled(RateLimited):
    """Too many failed attempts for this e-mail or client address; retry after a delay."""

    code = "login_throttled"

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, int(-(-retry_after_s // 1)))  # whole seconds, rounded up
        super().__init__(f"too many failed attempts; retry in {self.retry_after_s} s")


class InvalidEmail(BadRequest):
    """The e-mail address is not acceptable."""

    code = "invalid_email"


class InvalidDisplayName(BadRequest):
    """The display name is empty, too long, or holds control characters."""

    code = "invalid_display_name"


class EmailTaken(Conflict):
    """An account with this e-mail exists already (one account per practitioner)."""

    code = "email_taken"


class EnrolmentRequired(Forbidden):
    """The password is right but the second factor is not enrolled yet: no tokens until it is."""

    code = "totp_enrolment_required"


class NoPendingEnrolment(Conflict):
    """Confirm was called without a started enrolment."""

    code = "totp_not_started"


class InvalidRefreshToken(Unauthenticated):
    """The refresh token is unknown, expired, used already, or its session was ended."""

    code = "refresh_invalid"

    def __init__(self, message: str = "refresh token is not valid") -> None:
        super().__init__(message)


class AccountNotFound(NotFound):
    """No such account (administrator commands only; the login paths never say this)."""

    code = "account_not_found"


# --- values ------------------------------------------------------------------------------------


class AccountState(StrEnum):
    """Where an account is in its life: enrolment first, then tokens."""

    ENROLMENT_REQUIRED = "totp_enrolment_required"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class PractitionerRow:
    """One account as stored. Times are unix seconds; ``revoked_after`` is whole seconds."""

    id: str
    email: str
    display_name: str
    password_hash: str
    totp_sealed: bytes | None
    totp_enrolled: bool
    totp_last_step: int | None
    created_at: float
    revoked_after: float | None

    @property
    def state(self) -> AccountState:
        """Active once the second factor is confirmed."""
        return AccountState.ACTIVE if self.totp_enrolled else AccountState.ENROLMENT_REQUIRED


# --- e-mail and names --------------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """The canonical form accounts are unique by: trimmed, NFC, lower case, IDNA domain.

    Raises :class:`InvalidEmail` for anything that is not a plausible single mailbox address.
    Case is folded in the local part too: RFC 5321 allows case-sensitive local parts, but no
    mail provider practitioners use has them, and two accounts differing only in case would be
    one person with two accounts.
    """
    text = unicodedata.normalize("NFC", raw.strip()).lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or len(text) > MAX_EMAIL_CHARS:
        raise InvalidEmail("not an e-mail address")
    if len(local) > MAX_LOCAL_PART_CHARS or any(_bad_email_char(c) for c in text):
        raise InvalidEmail("not an e-mail address")
    if "@" in local or local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidEmail("not an e-mail address")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidEmail("the e-mail domain is not valid") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_valid_label(label) for label in labels):
        raise InvalidEmail("the e-mail domain is not valid")
    return f"{local}@{ascii_domain}"


def _bad_email_char(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] == "C" or char in '"(),:;<>[\\]'


def _valid_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and not label.startswith("-")
        and not label.endswith("-")
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
    )


def normalize_display_name(raw: str) -> str:
    """The trimmed NFC name; refuses empty, over-long and control characters."""
    name = unicodedata.normalize("NFC", raw.strip())
    if not name or len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidDisplayName(f"display name must be 1..{MAX_DISPLAY_NAME_CHARS} characters")
    if any(unicodedata.category(c)[0] == "C" for c in name):
        raise InvalidDisplayName("display name must not contain control characters")
    return name


# --- login throttling --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff once ``threshold`` failures are counted: base, 2·base, … up to cap.

    Every attempt counts as a failure until it succeeds (then the counter is cleared), so that
    parallel attempts cannot all slip in before the first failure is written. A counter whose
    last attempt is older than ``forget_after_s`` starts again from zero.
    """

    threshold: int = 5
    base_s: float = 1.0
    cap_s: float = 900.0
    forget_after_s: float = 86_400.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("backoff needs threshold >= 1 and 0 < base_s <= cap_s")
        if self.forget_after_s < self.cap_s:
            raise ValueError("forget_after_s must be at least cap_s")

    def delay_s(self, failures: int) -> float:
        """Seconds to refuse attempts after the ``failures``-th failure (0 below the threshold)."""
        if failures < self.threshold:
            return 0.0
        exponent = min(failures - self.threshold, 62)  # 2**62 s is far past any cap
        return float(min(self.base_s * 2**exponent, self.cap_s))


@dataclass(frozen=True, slots=True)
class ThrottleCounter:
    """The stored state of one throttle key. Times are unix seconds."""

    failures: int
    last_attempt: float
    locked_until: float


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """A key to count attempts under, with the policy that applies to it."""

    key: str
    policy: BackoffPolicy


def throttle_wait(counter: ThrottleCounter | None, policy: BackoffPolicy, now: float) -> float:
    """Seconds until an attempt under this counter is allowed (0: now)."""
    if counter is None or now - counter.last_attempt > policy.forget_after_s:
        return 0.0
    return max(0.0, counter.locked_until - now)


def counted_attempt(
    counter: ThrottleCounter | None, policy: BackoffPolicy, now: float
) -> ThrottleCounter:
    """The counter after one more (provisionally failed) attempt at ``now``."""
    fresh = counter is None or now - counter.last_attempt > policy.forget_after_s
    failures = 1 if fresh or counter is None else counter.failures + 1
    delay = policy.delay_s(failures)
    return ThrottleCounter(failures, now, now + delay if delay else 0.0)


def email_throttle_key(email: str) -> str:
    """The per-account key. Derived from the normalised e-mail, not the account id, so that
    unknown e-mails are throttled exactly like known ones (no enumeration through lockout)."""
    digest = hashlib.sha256(b"fortrolig-login-email\0" + email.encode("utf-8")).hexdigest()
    return "email:" + digest[:40]


def pair_throttle_key(email: str, ip_key: str) -> str:
    """The key of one account from one client address (``ip_key`` from :func:`ip_throttle_key`):
    what a wrong password locks, so that a stranger's guesses lock only the stranger's address."""
    raw = b"fortrolig-login-pair\0" + email.encode("utf-8") + b"\0" + ip_key.encode("utf-8")
    return "pair:" + hashlib.sha256(raw).hexdigest()[:40]


def lockout_email() -> tuple[str, str]:
    """Subject and body of the alert sent when an account's sign-ins are locked (no address,
    no time: the mail may be read on a lock screen; the practitioner knows where they were)."""
    subject = "Mislykkede login-forsøg / Failed sign-in attempts"
    body = (
        "Der har været gentagne mislykkede forsøg på at logge ind på din Fortrolig-konto.\n"
        "Du kan stadig logge ind med din adgangskode og din kode fra godkendelsesappen.\n"
        "Var det ikke dig, så skift din adgangskode, når du er logget ind.\n\n"
        "---\n\n"
        "There have been repeated failed attempts to sign in to your Fortrolig account.\n"
        "You can still sign in with your password and the code from your authenticator app.\n"
        "If it was not you, change your password once you are signed in.\n"
    )
    return subject, body


def ip_throttle_key(address: str, purpose: str = "login") -> str | None:
    """The per-client-address key: the IPv4 address or the IPv6 /64 (one host's usual share).

    Returns None for an unparsable address (e.g. a Unix socket), which then counts per account
    only.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))
        return f"{purpose}-ip:{network}"
    return f"{purpose}-ip:{ip}"


# --- refresh tokens ----------------------------------------------------------------------------


def new_refresh_token() -> str:
    """A fresh opaque refresh token: ``frt_`` and 256 random bits, base64url."""
    return REFRESH_TOKEN_PREFIX + random_token(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: str) -> str:
    """The SHA-256 (hex) that is stored instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def plausible_refresh_token(token: str) -> bool:
    """Cheap shape check before any database work."""
    return token.startswith(REFRESH_TOKEN_PREFIX) and 40 <= len(token) <= 100 and token.isascii()


class RefreshVerdict(StrEnum):
    """What presenting a refresh token leads to."""

    ROTATE = "rotate"
    """Valid: mark it used, issue its successor in the same family."""
    REUSED = "reused"
    """Already rotated: someone replays an old token, so the whole family is revoked."""
    REVOKED = "revoked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A stored refresh token with its family's state. Times are unix seconds."""

    family_id: str
    practitioner_id: str
    used_at: float | None
    family_expires_at: float
    family_revoked_at: float | None


def judge_refresh(record: RefreshRecord | None, now: float) -> RefreshVerdict:
    """The verdict on a presented refresh token; a used token is reuse even when expired."""
    if record is None:
        return RefreshVerdict.UNKNOWN
    if record.family_revoked_at is not None:
        return RefreshVerdict.REVOKED
    if record.used_at is not None:
        return RefreshVerdict.REUSED
    if now >= record.family_expires_at:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.ROTATE


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """The store's answer to a rotation: the verdict and, when known, whose token it was."""

    verdict: RefreshVerdict
    practitioner_id: str | None = None
    family_expires_at: float = 0.0

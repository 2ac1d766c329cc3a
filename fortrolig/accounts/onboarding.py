"""Onboarding rules: confirmation and reset links, recovery codes, what their e-mails say. Pure.

- A **link token** is ``flk_`` + 256 random bits (base64url). It travels in the URL fragment
  (``/confirm#…``, ``/reset#…``), so it never reaches a server log or a Referer; only its
  SHA-256 is stored, it works once, and it expires (:data:`CONFIRM_TTL_S`, :data:`RESET_TTL_S`).
- A **recovery code** is 10 characters of Crockford base32 (50 random bits) shown as
  ``xxxxx-xxxxx``; :data:`RECOVERY_CODES` per set, shown once, stored as SHA-256, each usable
  once instead of a TOTP code. Brute force is bounded by the login throttle (5 free failures,
  then exponential backoff), so 50 bits are ample.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final, Protocol

from fortrolig.core.errors import BadRequest, Forbidden

CONFIRM_TTL_S: Final = 24 * 3600
"""An e-mail confirmation link works for a day."""
RESET_TTL_S: Final = 30 * 60
"""A password-reset link works for 30 minutes."""
RECOVERY_CODES: Final = 10
LINK_PREFIX: Final = "flk_"
PURPOSE_CONFIRM: Final = "confirm"
PURPOSE_RESET: Final = "reset"

_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford: no i, l, o, u
_LINK_RE: Final = re.compile(r"flk_[A-Za-z0-9_-]{43}")
_RECOVERY_RE: Final = re.compile(r"[0-9a-hjkmnp-tv-z]{10}")


class Mailer(Protocol):
    """Sends one plain-text message (the node's SMTP adapter); raises on failure."""

    async def send(self, to: str, subject: str, body: str) -> None: ...


class InvalidLink(BadRequest):
    """The link is malformed, unknown, already used or expired (one answer for all)."""

    code = "invalid_link"


class EmailUnconfirmed(Forbidden):
    """The account's e-mail address has not been confirmed by its link yet."""

    code = "email_unconfirmed"
    fault = "client"


def new_link_token() -> str:
    """A fresh single-use link token."""
    return LINK_PREFIX + secrets.token_urlsafe(32)


def plausible_link_token(token: str) -> bool:
    """Shape check before any database lookup."""
    return _LINK_RE.fullmatch(token) is not None


def link_hash(token: str) -> str:
    """What is stored of a link token (hex SHA-256)."""
    return hashlib.sha256(b"fortrolig-link\0" + token.encode()).hexdigest()


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """``n`` fresh recovery codes as shown (``xxxxx-xxxxx``)."""
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        codes.append(raw[:5] + "-" + raw[5:])
    return codes


def normalize_recovery_code(code: str) -> str | None:
    """The code as stored (lower case, no separators; Crockford's look-alikes folded), or None
    when it cannot be a recovery code (e.g. a 6-digit TOTP code)."""
    raw = re.sub(r"[\s-]", "", code).lower().translate(str.maketrans("ilo", "110"))
    return raw if _RECOVERY_RE.fullmatch(raw) else None


def recovery_hash(practitioner_id: str, normalized: str) -> str:
    """What is stored of a recovery code, bound to its account (hex SHA-256)."""
    return hashlib.sha256(
        f"fortrolig-recovery\0{practitioner_id}\0{normalized}".encode()
    ).hexdigest()


def confirm_email(url: str) -> tuple[str, str]:
    """Subject and body of the sign-up confirmation mail."""
    subject = "Bekræft din e-mailadresse / Confirm your e-mail address"
    body = (
        "Tak fordi du oprettede en konto hos Fortrolig.\n"
        f"Åbn linket for at bekræfte din e-mailadresse:\n\n{url}\n\n"
        "Linket virker én gang i 24 timer. Har du ikke oprettet en konto, så se bort fra mailen.\n"
        "\n---\n\n"
        "Thank you for creating a Fortrolig account.\n"
        f"Open the link to confirm your e-mail address:\n\n{url}\n\n"
        "The link works once for 24 hours. If you did not sign up, ignore this message.\n"
    )
    return subject, body


def reset_email(url: str) -> tuple[str, str]:
    """Subject and body of the password-reset mail."""
    subject = "Nulstil din adgangskode / Reset your password"
    body = (
        "Nogen (forhåbentlig dig) bad om at nulstille adgangskoden til din Fortrolig-konto.\n"
        f"Åbn linket for at vælge en ny:\n\n{url}\n\n"
        "Linket virker én gang i 30 minutter. Du skal stadig bruge din kode fra "
        "godkendelsesappen for at logge ind.\n\n---\n\n"
        "Someone (hopefully you) asked to reset the password of your Fortrolig account.\n"
        f"Open the link to choose a new one:\n\n{url}\n\n"
        "The link works once for 30 minutes. You will still need the code from your "
        "authenticator app to log in.\n"
    )
    return subject, body

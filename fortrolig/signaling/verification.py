"""Client verification primitives: e-mail one-time codes, pseudonyms, secrets. Pure (stdlib only).

A code is 6 decimal digits from :mod:`secrets`, valid :data:`CODE_TTL_S` seconds for at most
:data:`CODE_ATTEMPTS` guesses. Only a salted SHA-256 of it is kept, and a guess is compared in
constant time. Invite secrets and verification handles are 256-bit URL-safe strings of which only
the SHA-256 is stored: looking one up by its digest reveals nothing useful through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

CODE_DIGITS: Final = 6
CODE_TTL_S: Final = 600
CODE_ATTEMPTS: Final = 5
SECRET_BYTES: Final = 32  # invite secrets and verification handles: 256 random bits
SALT_BYTES: Final = 16

_SECRET_RE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of 32 bytes, no padding
_CODE_RE: Final = re.compile(r"^[0-9]{6}$")
# No 0/O, 1/I/L: a pseudonym may be read aloud.
_PSEUDONYM_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_secret() -> str:
    """A fresh 256-bit URL-safe secret (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def is_secret(value: object) -> bool:
    """Whether ``value`` has the shape of a secret made by :func:`new_secret`."""
    return isinstance(value, str) and bool(_SECRET_RE.match(value))


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a secret is stored."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_code() -> str:
    """A uniformly random 6-digit code (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def is_code(value: object) -> bool:
    """Exactly six ASCII digits."""
    return isinstance(value, str) and bool(_CODE_RE.match(value))


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def code_digest(salt: bytes, code: str) -> bytes:
    """What is stored of a code: SHA-256 over a per-challenge salt and the code."""
    return hashlib.sha256(salt + code.encode("ascii")).digest()


def code_matches(salt: bytes, stored: bytes, guess: str) -> bool:
    """Compare a guess with the stored digest in constant time."""
    return hmac.compare_digest(code_digest(salt, guess), stored)


def pseudonym() -> str:
    """A random label for an anonymous client ("Anonym K7QF"): tells waiting clients apart,
    links to nobody."""
    return "Anonym " + "".join(secrets.choice(_PSEUDONYM_ALPHABET) for _ in range(4))


def email_hint(address: str) -> str:
    """``a***@example.eu``: enough for the client to recognise the address, not to learn it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"

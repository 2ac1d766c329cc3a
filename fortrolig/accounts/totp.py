"""TOTP second factor (RFC 6238 over RFC 4226 HOTP) and the sealing of TOTP secrets at rest.

Codes are HMAC-SHA-1, 6 digits, 30-second steps, accepted one step either side of now. A code is
single-use: :func:`matching_step` returns the time step a code belongs to, and the store accepts a
step only if it is later than the last step the account used (one atomic compare-and-set), so the
same code cannot be replayed within its window, nor can an older code follow a newer one.

Secrets are 160 random bits (RFC 4226's recommended length) and exist in the database only
sealed with AES-256-GCM (:mod:`fortrolig.core.aead`), bound by associated data to their account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import quote, urlencode

from fortrolig.core.aead import (
    AssociatedData,
    IntegrityError,
    Keyring,
    open_sealed,
    seal,
)
from fortrolig.core.envelope import open_enveloped, seal_enveloped

DIGITS: Final = 6
PERIOD_S: Final = 30
WINDOW_STEPS: Final = 1
SECRET_BYTES: Final = 20
ALGORITHM: Final = "SHA1"


def new_secret() -> bytes:
    """Return a fresh random 160-bit secret."""
    return secrets.token_bytes(SECRET_BYTES)


def secret_base32(secret: bytes) -> str:
    """The secret as authenticator apps want it: base32 without padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def hotp(secret: bytes, counter: int, digits: int = DIGITS) -> str:
    """RFC 4226 HOTP value of ``counter`` (HMAC-SHA-1, dynamic truncation), zero-padded."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def time_step(unix_time: float, period_s: int = PERIOD_S) -> int:
    """The RFC 6238 time step ``T = floor(unix_time / period)`` (T0 = 0)."""
    return int(unix_time // period_s)


def totp(secret: bytes, unix_time: float, digits: int = DIGITS) -> str:
    """The TOTP code valid at ``unix_time``."""
    return hotp(secret, time_step(unix_time), digits)


def normalize_code(code: str) -> str | None:
    """The code without spaces, or None unless it is exactly :data:`DIGITS` ASCII digits."""
    cleaned = "".join(code.split())
    if len(cleaned) != DIGITS or not (cleaned.isascii() and cleaned.isdigit()):
        return None
    return cleaned


def matching_step(
    secret: bytes, code: str, unix_time: float, window: int = WINDOW_STEPS
) -> int | None:
    """The time step within ``window`` steps of now whose code is ``code``, or None.

    Every candidate is compared in constant time. Should two steps share a code (one chance in
    a million), the latest wins, which is the stricter choice for single use.
    """
    normalized = normalize_code(code)
    if normalized is None:
        return None
    now = time_step(unix_time)
    found: int | None = None
    for step in range(now - window, now + window + 1):
        if hmac.compare_digest(hotp(secret, step), normalized):
            found = step
    return found


def provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI (Google Authenticator key-URI format) for a QR code."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": secret_base32(secret),
            "issuer": issuer,
            "algorithm": ALGORITHM,
            "digits": DIGITS,
            "period": PERIOD_S,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


# --- sealing at rest ---------------------------------------------------------------------------


class SecretSealer(Protocol):
    """Seals and opens TOTP secrets; the database only ever sees the sealed form."""

    def seal(self, practitioner_id: str, secret: bytes) -> bytes:
        """Encrypt ``secret`` bound to ``practitioner_id``."""
        ...

    def open(self, practitioner_id: str, sealed: bytes) -> bytes:
        """Decrypt; raises :class:`IntegrityError` if changed, moved to another account, etc."""
        ...


_STATIC_TAG = b"S1"


def _aad(practitioner_id: str, key_version: int) -> AssociatedData:
    return AssociatedData(
        tenant=practitioner_id,
        client="",
        record=practitioner_id,
        field="totp_secret",
        version=1,
        key_version=key_version,
        schema_version=1,
    )


@dataclass(frozen=True, slots=True)
class KeyringSealer:
    """Envelope encryption: a fresh data key per secret, wrapped by the keyring's KEK.

    Layout: ``K1 | u16 len | kek_id | u32 kek_version | u16 len | wrapped DEK | GCM blob``.
    The keyring's KEK can be rotated without touching the secrets (old versions still unwrap).
    """

    keyring: Keyring

    def seal(self, practitioner_id: str, secret: bytes) -> bytes:
        """Seal under a fresh DEK and wrap that with the current KEK."""
        return seal_enveloped(self.keyring, secret, lambda v: _aad(practitioner_id, v))

    def open(self, practitioner_id: str, sealed: bytes) -> bytes:
        """Unwrap the DEK and open the secret."""
        return open_enveloped(self.keyring, sealed, lambda v: _aad(practitioner_id, v))


@dataclass(frozen=True, slots=True)
class StaticKeySealer:
    """AES-256-GCM under one 32-byte key passed in (e.g. from a KMS or a secret file)."""

    key: bytes

    def seal(self, practitioner_id: str, secret: bytes) -> bytes:
        """Seal directly under the key."""
        return _STATIC_TAG + seal(self.key, secret, _aad(practitioner_id, 0))

    def open(self, practitioner_id: str, sealed: bytes) -> bytes:
        """Open a :meth:`seal` output."""
        if not sealed.startswith(_STATIC_TAG):
            raise IntegrityError("TOTP secret was not sealed by the static key")
        return open_sealed(self.key, sealed[2:], _aad(practitioner_id, 0))

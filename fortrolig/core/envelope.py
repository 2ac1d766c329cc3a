"""Small secrets sealed under a fresh data key each, the data key wrapped by a keyring's KEK.

For records that are few and short-lived or small (a TOTP secret, a consultation's client
contact, a pending eID login's nonce): one self-describing blob per value, so a KEK rotation
needs no rewrite and each value opens on its own.

Layout: ``K1 | u16 len | kek_id | u32 kek_version | u16 len | wrapped DEK | GCM blob``. The
associated data is built by the caller from the KEK version (``aad_of``), binding the value to
its record and field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .aead import (
    AssociatedData,
    IntegrityError,
    Keyring,
    WrappedKey,
    new_data_key,
    open_sealed,
    seal,
)

_TAG = b"K1"

AadOf = Callable[[int], AssociatedData]


def seal_enveloped(keyring: Keyring, plaintext: bytes, aad_of: AadOf) -> bytes:
    """Seal ``plaintext`` under a fresh DEK wrapped with the keyring's current KEK."""
    dek = new_data_key()
    wrapped = keyring.wrap(dek)
    kek_id = wrapped.kek_id.encode("utf-8")
    blob = seal(dek, plaintext, aad_of(wrapped.kek_version))
    return (
        _TAG
        + struct.pack(">H", len(kek_id))
        + kek_id
        + struct.pack(">IH", wrapped.kek_version, len(wrapped.wrapped))
        + wrapped.wrapped
        + blob
    )


def open_enveloped(keyring: Keyring, sealed: bytes, aad_of: AadOf) -> bytes:
    """Open a :func:`seal_enveloped` blob; :class:`IntegrityError` if anything does not fit."""
    if not sealed.startswith(_TAG):
        raise IntegrityError("value was not sealed by a keyring")
    try:
        (id_len,) = struct.unpack_from(">H", sealed, 2)
        kek_id = sealed[4 : 4 + id_len].decode("utf-8")
        version, wrapped_len = struct.unpack_from(">IH", sealed, 4 + id_len)
    except (struct.error, UnicodeDecodeError):
        raise IntegrityError("sealed value is truncated") from None
    start = 4 + id_len + 6
    wrapped = sealed[start : start + wrapped_len]
    dek = keyring.unwrap(WrappedKey(kek_id, version, wrapped))
    return open_sealed(dek, sealed[start + wrapped_len :], aad_of(version))

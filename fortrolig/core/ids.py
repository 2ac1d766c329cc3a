"""Random identifiers and tokens."""

from __future__ import annotations

import base64
import secrets

_ID_BYTES = 16


def new_id(prefix: str) -> str:
    """Return ``prefix_<26 lowercase base32 chars>`` carrying 128 random bits."""
    raw = base64.b32encode(secrets.token_bytes(_ID_BYTES)).decode("ascii")
    return f"{prefix}_{raw.rstrip('=').lower()}"


def random_token(nbytes: int = 32) -> str:
    """Return a URL-safe random token of ``nbytes`` random bytes."""
    return secrets.token_urlsafe(nbytes)

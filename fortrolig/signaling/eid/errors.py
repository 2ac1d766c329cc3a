"""The typed errors of an eID login and their stable codes (docs/eid.md)."""

from __future__ import annotations

import re
from typing import Final

from fortrolig.core.errors import FortroligError, Unauthenticated

EID_ERROR_CODES: Final = frozenset(
    {
        "eid_state_unknown",
        "eid_state_expired",
        "eid_callback_invalid",
        "eid_authorization_denied",
        "eid_issuer_mismatch",
        "eid_token_request_failed",
        "eid_id_token_invalid",
        "eid_nonce_mismatch",
        "eid_acr_insufficient",
        "eid_discovery_failed",
        "eid_jwks_failed",
        "eid_return_to_invalid",
        "eid_too_many_pending",
    }
)
ID_TOKEN_REASONS: Final = frozenset(
    {
        "malformed",
        "header_forbidden",
        "algorithm",
        "key_unknown",
        "key_invalid",
        "signature",
        "issuer",
        "audience",
        "azp",
        "expired",
        "not_yet_valid",
        "stale",
        "claims",
    }
)
_REASON_RE = re.compile(r"^[a-z0-9_]{1,40}$")


class EidRejected(Unauthenticated):
    """The eID login is refused (bad state, bad token, too low a level): HTTP 401."""

    code = "eid_rejected"

    def __init__(self, message: str, *, code: str, reason: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reason = reason

    def __repr__(self) -> str:
        return f"EidRejected(code={self.code!r}, reason={self.reason!r}, message={self.message!r})"


class EidUnavailable(FortroligError):
    """The broker cannot be used (unreachable, misbehaving, misconfigured): HTTP 502."""

    code = "eid_unavailable"
    status = 502

    def __init__(self, message: str, *, code: str, reason: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"EidUnavailable(code={self.code!r}, reason={self.reason!r}, message={self.message!r})"
        )


def token_invalid(reason: str, message: str) -> EidRejected:
    """``eid_id_token_invalid`` narrowed by ``reason`` (one of :data:`ID_TOKEN_REASONS`)."""
    return EidRejected(message, code="eid_id_token_invalid", reason=reason)


def safe_reason(value: object, fallback: str) -> str:
    """An OAuth error code from the broker, if it looks like one (never free text)."""
    if isinstance(value, str) and _REASON_RE.match(value):
        return value
    return fallback

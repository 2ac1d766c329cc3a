"""Billing webhook: signature verification and event parsing (pure; no I/O, no clock).

Header (Stripe-like)::

    Fortrolig-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>[,v1=…]

The HMAC covers the exact request bytes. Several ``v1`` values are allowed (the provider signs
with every active secret while one is rotated), and several secrets may be configured here; any
match of any pair passes, compared in constant time. The signature is checked first, then the
timestamp: ``|now - t| <= tolerance`` (300 s), so an old but authentic delivery is refused with
its own code (``signature_stale``) and a forged one never learns about timestamps.

Body::

    {"id": "evt_…", "type": "payment_succeeded", "created": <unix seconds>,
     "data": {"practitioner_id": "…", "period_start": <unix seconds>}}

Extra fields are ignored (providers add fields); missing or mistyped required fields are a
:class:`MalformedEvent` (400). Unknown ``type`` values parse to :class:`UnknownEvent`, which the
service acknowledges and ignores.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fortrolig.accounts import subscription as rules
from fortrolig.accounts.subscription import Change, Plan, Subscription
from fortrolig.core.errors import BadRequest, Unauthenticated
from fortrolig.core.http_body import loads_object

SIGNATURE_HEADER = "Fortrolig-Signature"
TOLERANCE_S = 300
MAX_BODY = 64 * 1024
"""Larger webhook bodies are refused before verification (413)."""
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PRACTITIONER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_V1 = 8
_MIN_UNIX, _MAX_UNIX = 946_684_800, 4_102_444_800  # 2000-01-01 .. 2100-01-01


class SignatureMissing(Unauthenticated):
    """No ``Fortrolig-Signature`` header."""

    code = "signature_missing"


class SignatureMalformed(Unauthenticated):
    """The header is not ``t=<int>,v1=<hex>[,v1=<hex>…]``."""

    code = "signature_malformed"


class SignatureInvalid(Unauthenticated):
    """No ``v1`` value matches the body under any configured secret."""

    code = "signature_invalid"


class SignatureStale(Unauthenticated):
    """Authentic, but the timestamp is outside the tolerance (a replay or a badly set clock)."""

    code = "signature_stale"


class MalformedEvent(BadRequest):
    """The (authentic) body is not a well-formed event."""

    code = "malformed_event"


# --- signatures -----------------------------------------------------------------------------


def sign(body: bytes, secret: bytes, timestamp: int) -> str:
    """The header value for ``body`` signed with ``secret`` at ``timestamp`` (tests, tools)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a header; unknown schemes (``v0``…) ignored."""
    if header is None or not header.strip():
        raise SignatureMissing(f"{SIGNATURE_HEADER} header is required")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureMalformed(f"{SIGNATURE_HEADER}: expected key=value items")
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise SignatureMalformed(f"{SIGNATURE_HEADER}: bad t")
            timestamp = int(value)
        elif key == "v1":
            if not _HEX64.match(value):
                raise SignatureMalformed(f"{SIGNATURE_HEADER}: v1 must be 64 lowercase hex digits")
            signatures.append(value)
    if timestamp is None or not signatures or len(signatures) > _MAX_V1:
        raise SignatureMalformed(f"{SIGNATURE_HEADER}: needs one t and 1..{_MAX_V1} v1 values")
    return timestamp, signatures


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: Sequence[bytes],
    now: float,
    *,
    tolerance_s: int = TOLERANCE_S,
) -> int:
    """Check the header against ``body``; return its timestamp or raise a typed 401 error.

    Every (secret, v1) pair is compared with :func:`hmac.compare_digest`, without stopping at the
    first match, so the time taken does not depend on which one matched.
    """
    if not secrets:
        raise ValueError("no webhook secret configured")
    timestamp, signatures = parse_header(header)
    matched = False
    for secret in secrets:
        expected = _mac(secret, timestamp, body).encode()
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureInvalid("webhook signature does not match")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureStale(f"webhook timestamp is more than {tolerance_s} s from now")
    return timestamp


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventHeader:
    """What every event has: its unique id, its type and when the provider created it."""

    id: str
    type: str
    created: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionCreated:
    """The practitioner subscribed to ``plan`` with periods anchored at ``start``."""

    header: EventHeader
    practitioner_id: str
    plan: Plan
    start: datetime


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    """The period starting at ``period_start`` is paid."""

    header: EventHeader
    practitioner_id: str
    period_start: datetime


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    """A charge failed (the provider retries; the grace decides)."""

    header: EventHeader
    practitioner_id: str


@dataclass(frozen=True, slots=True)
class SubscriptionCancelled:
    """The practitioner cancelled, at the event's ``created`` instant."""

    header: EventHeader
    practitioner_id: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A type this server does not handle: acknowledged and ignored."""

    header: EventHeader


BillingEvent = (
    SubscriptionCreated | PaymentSucceeded | PaymentFailed | SubscriptionCancelled | UnknownEvent
)
KNOWN_TYPES = frozenset(
    {"subscription_created", "payment_succeeded", "payment_failed", "subscription_cancelled"}
)


def parse_event(body: bytes) -> BillingEvent:
    """Parse a verified body into a typed event; :class:`MalformedEvent` if it is not one."""
    try:
        doc = loads_object(body)  # the node's one JSON reader: depth first, then the parser
    except BadRequest as exc:
        raise MalformedEvent(f"webhook body: {exc.message}") from None
    header = EventHeader(
        _text(doc, "id", _EVENT_ID), _text(doc, "type", None), _instant(doc, "created")
    )
    if header.type not in KNOWN_TYPES:
        return UnknownEvent(header)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent("field 'data' must be an object")
    who = _text(data, "practitioner_id", _PRACTITIONER_ID)
    if header.type == "subscription_created":
        plan_name = _text(data, "plan", None)
        if plan_name not in {p.value for p in Plan}:
            raise MalformedEvent("field 'plan' must be 'monthly' or 'annual'")
        return SubscriptionCreated(header, who, Plan(plan_name), _instant(data, "start"))
    if header.type == "payment_succeeded":
        return PaymentSucceeded(header, who, _instant(data, "period_start"))
    if header.type == "payment_failed":
        return PaymentFailed(header, who)
    return SubscriptionCancelled(header, who)


def _text(doc: dict[str, Any], name: str, pattern: re.Pattern[str] | None) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value or len(value) > 128:
        raise MalformedEvent(f"field {name!r} must be a non-empty string (at most 128)")
    if pattern is not None and not pattern.match(value):
        raise MalformedEvent(f"field {name!r} has characters outside {pattern.pattern}")
    return value


def _instant(doc: dict[str, Any], name: str) -> datetime:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"field {name!r} must be unix seconds (an integer)")
    if not _MIN_UNIX <= value <= _MAX_UNIX:
        raise MalformedEvent(f"field {name!r} is out of range")
    return datetime.fromtimestamp(value, UTC)


def transition(event: BillingEvent) -> Change | None:
    """The rule an event applies, as a :data:`Change` (None for an unknown event).

    Every transition happens at the event's ``created`` instant, not at delivery: a delivery
    retried a day later still cancels (or pays) when it happened. A cancellation of a
    subscription that is cancelled already is a no-op here (the provider says what we know).
    """
    at = event.header.created
    match event:
        case SubscriptionCreated():
            who, plan, start = event.practitioner_id, event.plan, event.start
            return lambda sub, _h: rules.subscribe(sub, who, plan, start, at)
        case PaymentSucceeded():
            period = event.period_start
            return lambda sub, _h: rules.record_payment(sub, period, at)
        case PaymentFailed():
            return lambda sub, _h: rules.record_payment_failure(sub, at)
        case SubscriptionCancelled():
            return lambda sub, _h: _cancel_once(sub, at)
        case UnknownEvent():
            return None


def _cancel_once(sub: Subscription | None, at: datetime) -> Subscription:
    if sub is not None and sub.ends_at is not None:
        return sub
    return rules.cancel(sub, at)


def practitioner_of(event: BillingEvent) -> str | None:
    """The practitioner an event concerns (None for an unknown event)."""
    return None if isinstance(event, UnknownEvent) else event.practitioner_id

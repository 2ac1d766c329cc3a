"""Webhook verification (signature, timestamp, rotation) and event parsing, plus replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fortrolig.accounts import billing
from fortrolig.accounts import subscription as rules
from fortrolig.accounts.billing import (
    MalformedEvent,
    PaymentSucceeded,
    SignatureInvalid,
    SignatureMalformed,
    SignatureMissing,
    SignatureStale,
    SubscriptionCreated,
    UnknownEvent,
    sign,
    verify_signature,
)
from fortrolig.accounts.subscription import Plan
from fortrolig.accounts.subscription_service import SubscriptionService
from fortrolig.accounts.subscription_store import open_subscription_store
from fortrolig.core.clock import FakeClock

SECRET = b"s" * 32
OLD = b"o" * 32
NOW = 1_700_000_000


def event(kind: str = "payment_succeeded", eid: str = "evt_1", **data: Any) -> bytes:
    body = {"id": eid, "type": kind, "created": NOW, "data": {"practitioner_id": "prac_a", **data}}
    return json.dumps(body).encode()


BODY = event(period_start=NOW)


def test_valid_signature_returns_timestamp() -> None:
    assert verify_signature(sign(BODY, SECRET, NOW), BODY, [SECRET], NOW) == NOW


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature(header: str | None) -> None:
    with pytest.raises(SignatureMissing) as err:
        verify_signature(header, BODY, [SECRET], NOW)
    assert (err.value.status, err.value.code) == (401, "signature_missing")


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t={NOW}",
        "v1=" + "a" * 64,
        f"t=abc,v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t={NOW},v1=XYZ",
        f"t={NOW},v1={'A' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t={NOW}," + ",".join(["v1=" + "a" * 64] * 9),
    ],
)
def test_malformed_signature(header: str) -> None:
    with pytest.raises(SignatureMalformed) as err:
        verify_signature(header, BODY, [SECRET], NOW)
    assert err.value.status == 401


def test_wrong_secret_tampered_body_or_timestamp_is_invalid() -> None:
    header = sign(BODY, SECRET, NOW)
    for args in [
        (sign(BODY, b"x" * 32, NOW), BODY),
        (header, BODY + b" "),
        (header.replace(f"t={NOW}", f"t={NOW + 1}"), BODY),
    ]:
        with pytest.raises(SignatureInvalid) as err:
            verify_signature(*args, [SECRET], NOW)
        assert (err.value.status, err.value.code) == (401, "signature_invalid")


def test_stale_and_future_timestamps_have_their_own_code() -> None:
    for t in (NOW - 301, NOW + 301):
        with pytest.raises(SignatureStale) as err:
            verify_signature(sign(BODY, SECRET, t), BODY, [SECRET], NOW)
        assert (err.value.status, err.value.code) == (401, "signature_stale")
    for t in (NOW - 300, NOW + 300):
        assert verify_signature(sign(BODY, SECRET, t), BODY, [SECRET], NOW) == t


def test_forged_old_timestamp_is_invalid_not_stale() -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature(sign(BODY, b"x" * 32, NOW - 10_000), BODY, [SECRET], NOW)


def test_rotation_several_secrets_and_several_v1_values() -> None:
    # We accept the old and the new secret while the provider rotates.
    assert verify_signature(sign(BODY, OLD, NOW), BODY, [SECRET, OLD], NOW) == NOW
    # The provider signs with both; either matching one of ours passes.
    both = sign(BODY, OLD, NOW) + ",v1=" + sign(BODY, SECRET, NOW).split("v1=")[1]
    assert verify_signature(both, BODY, [SECRET], NOW) == NOW
    assert verify_signature(both, BODY, [OLD], NOW) == NOW
    # Unknown schemes are ignored, as long as a v1 matches.
    assert verify_signature("v0=abc," + sign(BODY, SECRET, NOW), BODY, [SECRET], NOW) == NOW
    with pytest.raises(SignatureInvalid):
        verify_signature(sign(BODY, OLD, NOW), BODY, [SECRET], NOW)


def test_no_secret_configured_is_a_server_bug() -> None:
    with pytest.raises(ValueError):
        verify_signature(sign(BODY, SECRET, NOW), BODY, [], NOW)


def test_parse_known_and_unknown_events() -> None:
    created = billing.parse_event(event("subscription_created", plan="annual", start=NOW))
    assert isinstance(created, SubscriptionCreated)
    assert created.plan is Plan.ANNUAL and created.start == datetime.fromtimestamp(NOW, UTC)
    paid = billing.parse_event(BODY)
    assert isinstance(paid, PaymentSucceeded) and paid.header.id == "evt_1"
    unknown = billing.parse_event(event("invoice_drafted"))
    assert isinstance(unknown, UnknownEvent)
    assert billing.transition(unknown) is None


def test_cancellation_event_is_idempotent_and_uses_the_event_time() -> None:
    created = datetime.fromtimestamp(NOW, UTC)
    sub = rules.record_payment(
        rules.subscribe(None, "prac_a", Plan.MONTHLY, created, created), created, created
    )
    cancel = billing.parse_event(event("subscription_cancelled", "evt_x"))
    change = billing.transition(cancel)
    assert change is not None
    once = change(sub, [])
    assert once.cancelled_at == created and once.ends_at == rules.add_months(created, 1)
    assert change(once, []) is once


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"type": "payment_failed", "created": NOW, "data": {}}).encode(),
        json.dumps({"id": "e 1", "type": "x", "created": NOW}).encode(),
        json.dumps({"id": "e1", "type": "x", "created": True}).encode(),
        json.dumps({"id": "e1", "type": "x", "created": "1700000000"}).encode(),
        json.dumps({"id": "e1", "type": "x", "created": 10}).encode(),
        json.dumps({"id": "e1", "type": "payment_failed", "created": NOW}).encode(),
        json.dumps({"id": "e1", "type": "payment_failed", "created": NOW, "data": {}}).encode(),
        event("subscription_created", plan="weekly", start=NOW),
        event("payment_succeeded"),
        event("payment_succeeded", period_start=1.5),
    ],
)
def test_malformed_events(body: bytes) -> None:
    with pytest.raises(MalformedEvent) as err:
        billing.parse_event(body)
    assert (err.value.status, err.value.code) == (400, "malformed_event")


async def test_replayed_delivery_is_a_duplicate_and_changes_nothing(tmp_path: Path) -> None:
    clock = FakeClock(now=NOW)
    service = SubscriptionService(
        open_subscription_store(str(tmp_path / "s.db")), clock, webhook_secrets=[SECRET]
    )
    await service.start()
    try:
        created = event("subscription_created", "evt_c", plan="monthly", start=NOW)
        first = await service.handle_webhook(created, sign(created, SECRET, NOW))
        assert (first.applied, first.duplicate) == (True, False)
        before = await service.get("prac_a")
        again = await service.handle_webhook(created, sign(created, SECRET, NOW + 5))
        assert (again.applied, again.duplicate) == (False, True)
        assert await service.get("prac_a") == before
        # A replay of the captured delivery (same header) after the tolerance is refused.
        clock.set(NOW + 301)
        with pytest.raises(SignatureStale):
            await service.handle_webhook(created, sign(created, SECRET, NOW))
        unknown = event("invoice_drafted", "evt_u")
        ack = await service.handle_webhook(unknown, sign(unknown, SECRET, NOW + 301))
        assert (ack.ignored, ack.duplicate) == (True, False)
        ack2 = await service.handle_webhook(unknown, sign(unknown, SECRET, NOW + 301))
        assert (ack2.ignored, ack2.duplicate) == (True, True)
    finally:
        await service.close()

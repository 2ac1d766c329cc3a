"""The subscription store and service on SQLite and PostgreSQL: migrations, atomicity, replay."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fortrolig.accounts import subscription as rules
from fortrolig.accounts.billing import sign
from fortrolig.accounts.subscription import (
    Access,
    Plan,
    State,
    Subscription,
    Suspension,
    SuspensionReason,
)
from fortrolig.accounts.subscription_cli import lift, show, suspend
from fortrolig.accounts.subscription_service import (
    SubscriptionRequired,
    SubscriptionService,
    watch_changes,
)
from fortrolig.accounts.subscription_store import (
    EventRecord,
    identity_hash,
    open_subscription_store,
)
from fortrolig.core.clock import FakeClock
from fortrolig.core.errors import FortroligError
from fortrolig.journal.store import open_store as open_journal_store

from .conftest import SECRET

NOW = datetime.fromtimestamp(1_700_000_000, UTC)


def webhook(kind: str, eid: str, created: int = 1_700_000_000, **data: object) -> bytes:
    doc = {"id": eid, "type": kind, "created": created, "data": {"practitioner_id": "p1", **data}}
    return json.dumps(doc).encode()


async def test_migrates_once_and_shares_a_database_with_the_journal(store_url: str) -> None:
    journal = open_journal_store(store_url)
    subs = open_subscription_store(store_url)
    await journal.open()
    await subs.open()
    try:
        assert await subs.schema_version() == 1
        assert await journal.schema_version() == 2
        again = open_subscription_store(store_url)
        await again.open()  # a second node starting: no migration runs twice
        assert await again.schema_version() == 1
        await again.close()
        await again.close()  # idempotent
    finally:
        await subs.close()
        await journal.close()


async def test_round_trip_of_every_field(store_url: str) -> None:
    store = open_subscription_store(store_url)
    await store.open()
    try:
        full = Subscription(
            "p1",
            plan=Plan.ANNUAL,
            anchor=NOW,
            paid_through=NOW + timedelta(days=365),
            trial_start=NOW - timedelta(days=30, microseconds=7),
            trial_end=NOW,
            cancelled_at=NOW + timedelta(days=3),
            ends_at=NOW + timedelta(days=365),
            suspension=Suspension(SuspensionReason.MISUSE, NOW + timedelta(days=4)),
            last_revocation=NOW + timedelta(days=1),
            prior_end=NOW - timedelta(days=400),
        )
        result = await store.update("p1", lambda _s, _h: full)
        assert result.changed and result.subscription == dataclasses.replace(full, version=1)
        assert await store.get("p1") == dataclasses.replace(full, version=1)
        same = await store.update("p1", lambda s, _h: dataclasses.replace(full, version=9))
        assert not same.changed and same.subscription is not None
        assert same.subscription.version == 1  # identical facts: nothing written
        assert await store.get("nobody") is None
    finally:
        await store.close()


async def test_refused_change_changes_nothing_and_forgets_the_event(store_url: str) -> None:
    store = open_subscription_store(store_url)
    await store.open()
    try:
        record = EventRecord("evt_x", "payment_succeeded", "p1", NOW)
        with pytest.raises(rules.NotSubscribed):
            await store.update("p1", lambda s, _h: rules.record_payment(s, NOW, NOW), event=record)
        assert await store.get("p1") is None
        assert not await store.event_seen("evt_x")  # a retry after subscription_created can apply
        assert await store.changes_since(0) == []
    finally:
        await store.close()


async def test_50_concurrent_deliveries_of_one_event_apply_once(
    store_url: str, clock: FakeClock
) -> None:
    services = [
        SubscriptionService(open_subscription_store(store_url), clock, webhook_secrets=[SECRET])
        for _ in range(5)
    ]
    for svc in services:
        await svc.start()
    try:
        created = webhook(
            "subscription_created", "evt_created", plan="monthly", start=1_700_000_000
        )
        header = sign(created, SECRET, 1_700_000_000)
        outcomes = await asyncio.gather(
            *(services[i % 5].handle_webhook(created, header) for i in range(50))
        )
        assert sum(o.applied for o in outcomes) == 1
        assert sum(o.duplicate for o in outcomes) == 49
        assert len(await services[0].changes_since(0)) == 1
        sub = await services[0].get("p1")
        assert sub is not None and sub.version == 1 and sub.plan is Plan.MONTHLY
    finally:
        for svc in services:
            await svc.close()


async def test_non_idempotent_change_under_one_event_id_applies_once(store_url: str) -> None:
    stores = [open_subscription_store(store_url) for _ in range(5)]
    for store in stores:
        await store.open()
    try:
        await stores[0].update("p1", lambda s, h: rules.start_trial(s, "p1", NOW, h))

        def extend(sub: Subscription | None, _h: object) -> Subscription:
            assert sub is not None and sub.trial_end is not None
            return dataclasses.replace(sub, trial_end=sub.trial_end + timedelta(days=1))

        record = EventRecord("evt_extend", "test_extend", "p1", NOW)
        results = await asyncio.gather(
            *(stores[i % 5].update("p1", extend, event=record) for i in range(50))
        )
        assert sum(r.changed for r in results) == 1
        assert sum(r.duplicate for r in results) == 49
        sub = await stores[0].get("p1")
        assert sub is not None and sub.trial_end == NOW + timedelta(days=31)
    finally:
        for store in stores:
            await store.close()


async def test_one_trial_per_identity_across_accounts(service: SubscriptionService) -> None:
    results = await asyncio.gather(
        *(service.start_trial(f"p{i}", " Alice@Example.DK ", now=NOW) for i in range(10)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Subscription)]
    losers = [r for r in results if isinstance(r, FortroligError)]
    assert len(winners) == 1 and len(losers) == 9
    assert {e.code for e in losers} == {"trial_not_allowed"}
    history = await service.store.trial_starts(identity_hash("alice@example.dk"))
    assert history == [NOW]
    later = rules.add_months(NOW, 24)
    again = await service.start_trial("p_other", "alice@example.dk", now=later)
    assert again.trial_start == later


async def test_gate_flow_through_webhooks_and_operator(
    service: SubscriptionService, clock: FakeClock
) -> None:
    seen: list[tuple[str, State]] = []
    service.add_listener(lambda pid, status: seen.append((pid, status.state)))
    t = 1_700_000_000
    for body in (
        webhook("subscription_created", "e1", plan="annual", start=t),
        webhook("payment_succeeded", "e2", period_start=t),
    ):
        await service.handle_webhook(body, sign(body, SECRET, t))
    assert (await service.require_sessions("p1")).state is State.ACTIVE
    issued = NOW + timedelta(minutes=1)
    clock.advance(600)
    await service.suspend("p1", "misuse")
    status = await service.check("p1")
    assert (status.state, status.access, status.reason) == (
        State.SUSPENDED,
        Access.NONE,
        "suspended_misuse",
    )
    with pytest.raises(SubscriptionRequired) as err:
        await service.require_export("p1")
    assert err.value.reason == "suspended_misuse" and err.value.status == 403
    assert await service.token_revoked("p1", issued)
    # A payment does not lift a misuse suspension.
    next_year = int(rules.add_months(NOW, 12).timestamp())
    body = webhook("payment_succeeded", "e3", period_start=next_year)
    await service.handle_webhook(body, sign(body, SECRET, int(clock.now())))
    after_payment = await service.get("p1")
    assert after_payment is not None and after_payment.paid_through == rules.add_months(NOW, 24)
    assert (await service.check("p1")).state is State.SUSPENDED
    clock.advance(60)
    await service.lift("p1")
    assert (await service.check("p1")).access is Access.SESSIONS
    assert await service.token_revoked("p1", issued)  # issued before the suspension: refused
    assert not await service.token_revoked("p1", service.now())
    with pytest.raises(rules.NotSuspended):
        await service.lift("p1")
    assert seen == [
        ("p1", State.PENDING),
        ("p1", State.ACTIVE),
        ("p1", State.SUSPENDED),
        ("p1", State.SUSPENDED),
        ("p1", State.ACTIVE),
    ]


async def test_bad_inputs_are_typed_and_change_nothing(service: SubscriptionService) -> None:
    cases = [
        (service.suspend("p1", "bored"), "invalid_subscription_input"),
        (service.suspend("", "misuse"), "invalid_practitioner_id"),
        (service.subscribe("p1", "weekly"), "invalid_subscription_input"),
        (service.cancel("p1"), "not_subscribed"),
        (service.lift("p1"), "no_subscription"),
        (service.start_trial("p1", "  "), "invalid_subscription_input"),
    ]
    for call, code in cases:
        with pytest.raises(FortroligError) as err:
            await call
        assert err.value.code == code
    assert await service.get("p1") is None
    assert await service.changes_since(0) == []


async def test_watch_changes_sees_changes_made_by_another_process(
    service: SubscriptionService, store_url: str, clock: FakeClock
) -> None:
    seen: asyncio.Queue[tuple[str, State]] = asyncio.Queue()
    task = asyncio.create_task(
        watch_changes(service, lambda pid, st: seen.put_nowait((pid, st.state)), interval_s=0.05)
    )
    other = SubscriptionService(open_subscription_store(store_url), clock)  # e.g. the CLI
    await other.start()
    try:
        await asyncio.sleep(0.1)
        await other.suspend("p9", SuspensionReason.NON_PAYMENT)
        assert await asyncio.wait_for(seen.get(), 5) == ("p9", State.SUSPENDED)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await other.close()


def test_cli_suspend_show_lift(store_url: str, tmp_path: Path, clock: FakeClock) -> None:
    lines: list[str] = []
    errors: list[str] = []
    url = store_url
    report = {"out": lines.append, "err": errors.append}
    assert show(tmp_path, "p1", database_url=url, **report) in (0, 2)
    if url.startswith("sqlite"):
        assert errors[-1].startswith("fortrolig: config_error: ") and not lines
        store = open_subscription_store(url)
        asyncio.run(_open_close(store))
    lines.clear()
    assert suspend(tmp_path, "p1", "misuse", database_url=url, clock=clock, **report) == 0
    assert lines[0] == "p1: suspended"
    assert "suspended_misuse" in lines[1]
    assert suspend(tmp_path, "p1", "misuse", database_url=url, clock=clock, **report) == 1
    assert errors[-1].startswith("fortrolig: already_suspended: ")
    assert suspend(tmp_path, "p1", "nope", database_url=url, clock=clock, **report) == 1
    out: list[str] = []
    assert show(tmp_path, "p1", database_url=url, clock=clock, as_json=True, out=out.append) == 0
    doc = json.loads(out[0])
    assert doc["state"] == "suspended" and doc["suspension"]["reason"] == "misuse"
    assert lift(tmp_path, "p1", database_url=url, clock=clock, **report) == 0
    lines.clear()
    assert lift(tmp_path, "p1", database_url=url, clock=clock, **report) == 1
    assert errors[-1].startswith("fortrolig: not_suspended: ") and not lines  # stdout: nothing
    assert lift(tmp_path / "typo", "p1", **report) == 2  # no database: never created
    assert not (tmp_path / "typo").exists()


async def _open_close(store: object) -> None:
    await store.open()  # type: ignore[attr-defined]
    await store.close()  # type: ignore[attr-defined]

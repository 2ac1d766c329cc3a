"""Property and example tests of the pure subscription rules (dates, states, access)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fortrolig.accounts import subscription as rules
from fortrolig.accounts.subscription import (
    ANNUAL_NOTICE,
    EXPORT_MONTHS,
    PAYMENT_GRACE,
    Access,
    Plan,
    State,
    Subscription,
    SuspensionReason,
    add_months,
    period_start,
    sessions_end,
)
from fortrolig.core.errors import FortroligError

US = timedelta(microseconds=1)
T0 = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)

instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)
plans = st.sampled_from(list(Plan))
reasons = st.sampled_from(list(SuspensionReason))


def paid(anchor: datetime, plan: Plan, periods: int) -> Subscription:
    """A subscription with ``periods`` periods paid one after another."""
    sub = rules.subscribe(None, "p", plan, anchor, anchor)
    for k in range(periods):
        sub = rules.record_payment(sub, period_start(anchor, plan, k), anchor)
    return sub


# --- month-end clamping ----------------------------------------------------------------------


def test_jan_31_renews_feb_29_then_mar_31() -> None:
    starts = [period_start(T0, Plan.MONTHLY, k) for k in range(4)]
    assert [s.date().isoformat() for s in starts] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]
    assert all(s.time() == T0.time() for s in starts)


def test_leap_day_annual_anchor() -> None:
    anchor = datetime(2024, 2, 29, tzinfo=UTC)
    days = [period_start(anchor, Plan.ANNUAL, k).date().isoformat() for k in range(5)]
    assert days == ["2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"]


@settings(max_examples=150, deadline=None)
@given(anchor=instants, plan=plans, renewals=st.integers(1, 120))
def test_renewals_keep_the_anchor_day_and_never_drift(
    anchor: datetime, plan: Plan, renewals: int
) -> None:
    sub = paid(anchor, plan, renewals)
    assert sub.paid_through == add_months(anchor, renewals * plan.months)
    previous = anchor
    for k in range(1, renewals + 1):
        start = period_start(anchor, plan, k)
        last_day = (add_months(start.replace(day=1), 1) - timedelta(days=1)).day
        assert start.day == min(anchor.day, last_day)  # clamped, never drifted below the anchor
        assert start.time() == anchor.time()
        assert start > previous
        previous = start


@settings(max_examples=200, deadline=None)
@given(anchor=instants, plan=plans, at=instants)
def test_period_index_contains_the_instant(anchor: datetime, plan: Plan, at: datetime) -> None:
    k = rules.period_index(anchor, plan, at)
    assert period_start(anchor, plan, k) <= at < period_start(anchor, plan, k + 1)


# --- trials ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(first=instants, offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=900)))
def test_trial_allowed_once_per_24_months(first: datetime, offset: timedelta) -> None:
    at = first + offset
    boundary = add_months(first, 24)
    assert rules.trial_eligible([first], at) == (at >= boundary)
    assert rules.trial_eligible([first], boundary)
    assert not rules.trial_eligible([first], boundary - US)
    assert rules.trial_eligible([], at)


def test_trial_refused_for_the_same_identity_and_for_the_same_account() -> None:
    sub = rules.start_trial(None, "p", T0, [])
    assert rules.status(sub, T0).state is State.TRIAL
    with pytest.raises(rules.TrialNotAllowed):
        rules.start_trial(None, "other", T0 + timedelta(days=40), [T0])
    with pytest.raises(rules.TrialNotAllowed):
        rules.start_trial(sub, "p", T0 + timedelta(days=40), [])
    again = rules.start_trial(sub, "p", add_months(T0, 24), [T0])
    assert again.trial_start == add_months(T0, 24)


def test_trial_refused_while_paying_or_suspended() -> None:
    with pytest.raises(rules.TrialNotAllowed):
        rules.start_trial(paid(T0, Plan.MONTHLY, 1), "p", T0 + timedelta(days=1), [])
    suspended = rules.suspend(None, "p", SuspensionReason.MISUSE, T0)
    with pytest.raises(rules.TrialNotAllowed):
        rules.start_trial(suspended, "p", T0, [])
    with pytest.raises(rules.InvalidSubscriptionInput):
        rules.start_trial(None, "p", T0, [], days=0)


def test_trial_lapses_into_export_window() -> None:
    sub = rules.start_trial(None, "p", T0, [], days=30)
    end = T0 + timedelta(days=30)
    assert rules.status(sub, end - US).access is Access.SESSIONS
    after = rules.status(sub, end)
    assert (after.state, after.access, after.reason) == (
        State.EXPIRED,
        Access.EXPORT_ONLY,
        "export_window",
    )
    assert rules.access(sub, add_months(end, 2) - US) is Access.EXPORT_ONLY
    assert rules.access(sub, add_months(end, 2)) is Access.NONE


# --- cancellation ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(anchor=instants, k=st.integers(0, 20), early=st.booleans())
def test_annual_notice_boundary_is_exactly_14_days(anchor: datetime, k: int, early: bool) -> None:
    sub = paid(anchor, Plan.ANNUAL, k + 1)
    renewal = period_start(anchor, Plan.ANNUAL, k + 1)
    at = renewal - ANNUAL_NOTICE if early else renewal - ANNUAL_NOTICE + US
    cancelled = rules.cancel(sub, at)
    expected = renewal if early else period_start(anchor, Plan.ANNUAL, k + 2)
    assert cancelled.ends_at == expected
    assert rules.status(cancelled, at).state is State.CANCELLED


@settings(max_examples=200, deadline=None)
@given(anchor=instants, k=st.integers(0, 30), into=st.floats(0, 0.999999))
def test_monthly_cancels_at_the_end_of_the_current_period(
    anchor: datetime, k: int, into: float
) -> None:
    sub = paid(anchor, Plan.MONTHLY, k + 1)
    start, end = period_start(anchor, Plan.MONTHLY, k), period_start(anchor, Plan.MONTHLY, k + 1)
    at = start + (end - start) * into
    cancelled = rules.cancel(sub, at)
    assert cancelled.ends_at == end
    assert rules.access(cancelled, end - US) is Access.SESSIONS
    assert rules.status(cancelled, end).access is Access.EXPORT_ONLY  # no grace after a cancel


def test_late_annual_cancellation_needs_the_next_period_paid() -> None:
    sub = paid(T0, Plan.ANNUAL, 1)
    renewal = add_months(T0, 12)
    late = rules.cancel(sub, renewal - timedelta(days=3))
    assert late.ends_at == add_months(T0, 24)
    # The next year is owed: unpaid, sessions end with the grace, not at the end of it.
    assert rules.access(late, renewal + PAYMENT_GRACE - US) is Access.SESSIONS
    assert rules.access(late, renewal + PAYMENT_GRACE) is Access.EXPORT_ONLY
    paid_late = rules.record_payment(late, renewal, renewal)
    assert rules.status(paid_late, add_months(T0, 24) - US).state is State.CANCELLED
    assert rules.access(paid_late, add_months(T0, 24)) is Access.EXPORT_ONLY
    with pytest.raises(rules.PeriodMismatch):
        rules.record_payment(paid_late, add_months(T0, 24), renewal)


def test_cancel_errors() -> None:
    with pytest.raises(rules.NotSubscribed):
        rules.cancel(None, T0)
    sub = rules.cancel(paid(T0, Plan.MONTHLY, 1), T0)
    with pytest.raises(rules.AlreadyCancelled):
        rules.cancel(sub, T0)
    with pytest.raises(rules.NotSubscribed):
        rules.cancel(paid(T0, Plan.MONTHLY, 1), add_months(T0, 2))


# --- payments and grace ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(anchor=instants, plan=plans, periods=st.integers(1, 24), failed=st.booleans())
def test_grace_boundaries(anchor: datetime, plan: Plan, periods: int, failed: bool) -> None:
    sub = paid(anchor, plan, periods)
    end = add_months(anchor, periods * plan.months)
    if failed:
        sub = rules.record_payment_failure(sub, end - timedelta(hours=1))
    assert rules.status(sub, end - US).reason == "paid"
    in_grace = rules.status(sub, end)
    assert in_grace.access is Access.SESSIONS
    assert in_grace.reason == ("payment_failed_grace" if failed else "payment_pending")
    assert rules.access(sub, end + PAYMENT_GRACE - US) is Access.SESSIONS
    over = rules.status(sub, end + PAYMENT_GRACE)
    if failed:
        assert (over.state, over.access, over.reason) == (
            State.SUSPENDED,
            Access.NONE,
            "suspended_non_payment",
        )
    else:
        assert (over.state, over.access) == (State.EXPIRED, Access.EXPORT_ONLY)
        export_end = add_months(end + PAYMENT_GRACE, EXPORT_MONTHS)
        assert rules.access(sub, export_end - US) is Access.EXPORT_ONLY
        assert rules.access(sub, export_end) is Access.NONE


def test_payment_in_grace_clears_a_scheduled_suspension_without_revoking() -> None:
    sub = rules.record_payment_failure(paid(T0, Plan.MONTHLY, 1), add_months(T0, 1))
    renewal = add_months(T0, 1)
    assert rules.revoked_after(sub) == renewal + PAYMENT_GRACE  # scheduled, in the future
    assert not rules.token_revoked(sub, T0, renewal)
    cured = rules.record_payment(sub, renewal, renewal + timedelta(days=2))
    assert cured.suspension is None and cured.last_revocation is None
    assert rules.status(cured, renewal + timedelta(days=20)).reason == "paid"


def test_payment_after_non_payment_suspension_restores_and_revokes_old_tokens() -> None:
    renewal = add_months(T0, 1)
    sub = rules.record_payment_failure(paid(T0, Plan.MONTHLY, 1), renewal)
    since = renewal + PAYMENT_GRACE
    late = since + timedelta(days=1)
    assert rules.status(sub, late).state is State.SUSPENDED
    cured = rules.record_payment(sub, renewal, late)
    assert rules.status(cured, late).access is Access.SESSIONS
    assert rules.token_revoked(cured, since - US, late)
    assert not rules.token_revoked(cured, since, late)


def test_payment_rules_refuse_mismatched_periods() -> None:
    sub = paid(T0, Plan.MONTHLY, 1)
    with pytest.raises(rules.PeriodMismatch):
        rules.record_payment(sub, T0 + timedelta(days=1), T0)
    with pytest.raises(rules.PeriodMismatch):
        rules.record_payment(sub, add_months(T0, 2), T0)  # gap
    with pytest.raises(rules.PeriodMismatch):
        rules.record_payment(sub, add_months(T0, -1), T0)
    assert rules.record_payment(sub, T0, T0) == sub  # paid already: unchanged
    with pytest.raises(rules.NotSubscribed):
        rules.record_payment(None, T0, T0)


def test_unpaid_subscription_is_pending() -> None:
    sub = rules.subscribe(None, "p", Plan.MONTHLY, T0, T0)
    status = rules.status(sub, T0)
    assert (status.state, status.access, status.reason) == (
        State.PENDING,
        Access.NONE,
        "awaiting_payment",
    )
    assert rules.subscribe(sub, "p", Plan.MONTHLY, T0, T0) is sub
    with pytest.raises(rules.AlreadySubscribed):
        rules.subscribe(paid(T0, Plan.MONTHLY, 1), "p", Plan.ANNUAL, T0, T0)


def test_resubscribing_keeps_the_old_export_window() -> None:
    sub = rules.cancel(paid(T0, Plan.MONTHLY, 1), T0)
    end = add_months(T0, 1)
    later = end + timedelta(days=10)
    again = rules.subscribe(sub, "p", Plan.ANNUAL, later, later)
    assert again.prior_end == end
    assert rules.status(again, later).access is Access.EXPORT_ONLY  # pending, old window
    paid_again = rules.record_payment(again, later, later)
    assert rules.status(paid_again, later).state is State.ACTIVE


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(rules.InvalidSubscriptionInput):
        rules.status(None, datetime(2024, 1, 1))


# --- random histories ------------------------------------------------------------------------

OPS = ["trial", "subscribe", "pay", "fail", "cancel", "suspend", "lift"]
steps = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=200)),
        plans,
        reasons,
    ),
    max_size=12,
)


def _apply(sub: Subscription | None, op: str, at: datetime, plan: Plan, why: SuspensionReason):
    if op == "trial":
        return rules.start_trial(sub, "p", at, [])
    if op == "subscribe":
        return rules.subscribe(sub, "p", plan, at, at)
    if op == "pay":
        assert sub is not None and sub.anchor is not None
        return rules.record_payment(sub, sub.paid_through or sub.anchor, at)
    if op == "fail":
        return rules.record_payment_failure(sub, at)
    if op == "cancel":
        return rules.cancel(sub, at)
    if op == "suspend":
        return rules.suspend(sub, "p", why, at)
    return rules.lift(sub, at)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Subscription, datetime]:
    """A subscription built by a random sequence of operations, and the time of the last one."""
    at = draw(instants.filter(lambda d: d.year < 2040))
    sub: Subscription | None = None
    for op, gap, plan, why in draw(steps):
        at += gap
        try:
            sub = _apply(sub, op, at, plan, why)
        except (FortroligError, AssertionError):
            pass
    if sub is None:
        sub = rules.start_trial(None, "p", at, [])
    return sub, at


def _horizon(sub: Subscription, last_op: datetime) -> datetime:
    """After this instant no date allows sessions any more: every end, and the last operation."""
    ends = [e for e in (sub.trial_end, sub.prior_end, sessions_end(sub)) if e is not None]
    return max([*ends, last_op])


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    a=st.timedeltas(max_value=timedelta(days=900), min_value=timedelta(0)),
    b=st.timedeltas(max_value=timedelta(days=900), min_value=timedelta(0)),
)
def test_access_is_monotone_in_time_after_expiry(
    history: tuple[Subscription, datetime], a: timedelta, b: timedelta
) -> None:
    sub, last_op = history
    start = _horizon(sub, last_op)
    t1, t2 = start + min(a, b), start + max(a, b)
    assert rules.access(sub, t1) is not Access.SESSIONS
    assert rules.access(sub, t2).rank <= rules.access(sub, t1).rank


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    why=reasons,
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2000)),
)
def test_suspension_always_wins(
    history: tuple[Subscription, datetime], why: SuspensionReason, later: timedelta
) -> None:
    sub, at = history
    try:
        suspended = rules.suspend(sub, "p", why, at)
    except rules.AlreadySuspended:
        suspended = sub
    status = rules.status(suspended, at + later)
    assert (status.state, status.access) == (State.SUSPENDED, Access.NONE)
    assert status.reason.startswith("suspended_")
    revoked = rules.revoked_after(suspended)
    assert revoked is not None and revoked <= at
    assert rules.token_revoked(suspended, revoked - US, at + later)


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    why=reasons,
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2000)),
)
def test_lifting_restores_what_the_dates_allow(
    history: tuple[Subscription, datetime], why: SuspensionReason, later: timedelta
) -> None:
    sub, at = history
    assume(sub.suspension is None)
    lifted = rules.lift(rules.suspend(sub, "p", why, at), at + later)
    t = at + later
    before, after = rules.status(sub, t), rules.status(lifted, t)
    assert (after.state, after.access, after.reason) == (before.state, before.access, before.reason)
    assert lifted.last_revocation == at


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=1500)),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_status_is_constant_until_changes_at(
    history: tuple[Subscription, datetime], offset: timedelta, fraction: float
) -> None:
    sub, at = history
    now = at + offset
    status = rules.status(sub, now)
    if status.changes_at is None:
        later = now + timedelta(days=3650)
    else:
        later = now + (status.changes_at - now - US) * fraction
    assert later < (status.changes_at or datetime.max.replace(tzinfo=UTC))
    again = rules.status(sub, later)
    assert dataclasses.replace(again, changes_at=None) == dataclasses.replace(
        status, changes_at=None
    )

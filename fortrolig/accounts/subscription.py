"""Subscription rules: states, periods, trials, cancellation, grace, export window, suspension.

Pure: no I/O and no clock. Every function takes the instant it reasons about (``at``/``now``) as
a timezone-aware :class:`~datetime.datetime`; naive datetimes are refused. A
:class:`Subscription` records facts (what was bought, what was paid, when it was cancelled or
suspended); every state and access decision is *derived* from those facts and an instant by
:func:`status`, so a clock moving forward changes the answer without anything being written.

Rules (``docs/subscription.md`` has the full text and a state diagram):

- Plans are monthly or annual, paid in advance. Periods start on the anchor (the subscription's
  start) and renew on the anchor's day of the month, clamped to the month's last day. Period ``k``
  starts at ``add_months(anchor, k * months)``: always computed from the anchor, never from the
  previous period end, so Jan 31 → Feb 29 → Mar 31 never drifts.
- A free trial (``DEFAULT_TRIAL_DAYS``) is allowed once per 24 months per practitioner identity.
- Monthly cancels any time, effective at the end of the current period. Annual must be cancelled
  at least 14 days before the renewal; later, it renews once more and ends a period later.
- A renewal payment is awaited for ``PAYMENT_GRACE`` after the paid period ends (sessions go on).
  A failed payment schedules a non-payment suspension at the end of that grace.
- When sessions end (trial over, cancelled period over, grace over without payment) the
  practitioner has ``EXPORT_MONTHS`` of export-only access, then none.
- A suspension (non-payment or misuse) blocks sessions and exports from its ``since`` instant;
  lifting it restores what the dates allow. Tokens issued before a suspension stay refused.
"""

from __future__ import annotations

import calendar
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from fortrolig.core.errors import BadRequest, Conflict, NotFound

PAYMENT_GRACE = timedelta(days=7)
"""How long sessions continue after a paid period ends while its renewal payment is awaited; a
failed payment suspends (non-payment) when this grace ends."""
EXPORT_MONTHS = 2
"""Export-only access after sessions end, in calendar months."""
TRIAL_WINDOW_MONTHS = 24
"""One free trial per identity within this many calendar months."""
ANNUAL_NOTICE = timedelta(days=14)
"""An annual plan must be cancelled at least this long before its renewal."""
DEFAULT_TRIAL_DAYS = 30
MAX_TRIAL_DAYS = 90


class Plan(StrEnum):
    """A paid plan; its value is the wire and database name."""

    MONTHLY = "monthly"
    ANNUAL = "annual"

    @property
    def months(self) -> int:
        """Length of one period in calendar months."""
        return 1 if self is Plan.MONTHLY else 12


class State(StrEnum):
    """The derived state of a subscription at an instant.

    ``trial``, ``active``, ``cancelled`` (still running to its end), ``expired`` and
    ``suspended`` are the states of the rules; ``pending`` (subscribed, first period not paid or
    not started yet) and ``none`` (no subscription and no trial) complete them.
    """

    TRIAL = "trial"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    PENDING = "pending"
    NONE = "none"


class Access(StrEnum):
    """What a practitioner may do: hold sessions (and export), only export journals, nothing."""

    SESSIONS = "sessions"
    EXPORT_ONLY = "export_only"
    NONE = "none"

    @property
    def rank(self) -> int:
        """2 for sessions, 1 for export only, 0 for none (access only ever shrinks with rank)."""
        return {"sessions": 2, "export_only": 1, "none": 0}[self.value]

    @property
    def may_export(self) -> bool:
        """True when journal export is allowed."""
        return self is not Access.NONE


class SuspensionReason(StrEnum):
    """Why a practitioner is suspended."""

    NON_PAYMENT = "non_payment"
    MISUSE = "misuse"


# --- errors ---------------------------------------------------------------------------------


class InvalidSubscriptionInput(BadRequest):
    """A value given to a subscription rule is malformed (naive datetime, bad plan, bad days)."""

    code = "invalid_subscription_input"


class NoSubscription(NotFound):
    """The practitioner has no subscription record."""

    code = "no_subscription"


class NotSubscribed(Conflict):
    """The operation needs a running paid subscription and there is none."""

    code = "not_subscribed"


class AlreadySubscribed(Conflict):
    """A running subscription exists already (a plan change is not supported)."""

    code = "already_subscribed"


class AlreadyCancelled(Conflict):
    """The subscription is cancelled already."""

    code = "already_cancelled"


class TrialNotAllowed(Conflict):
    """The identity (or account) had a trial within 24 months, or already pays."""

    code = "trial_not_allowed"


class PeriodMismatch(Conflict):
    """A payment names a period the subscription does not have (not a period start, a gap, or
    a period after the subscription's end)."""

    code = "period_mismatch"


class AlreadySuspended(Conflict):
    """The practitioner is already suspended for this reason."""

    code = "already_suspended"


class NotSuspended(Conflict):
    """There is no suspension to lift."""

    code = "not_suspended"


# --- model ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suspension:
    """A suspension in effect from ``since`` (which lies in the future while a non-payment grace
    runs)."""

    reason: SuspensionReason
    since: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    """The facts about one practitioner's subscription; states are derived by :func:`status`.

    ``anchor`` is the start of the first paid period; ``paid_through`` the end of the latest
    paid period (None: nothing paid yet). ``ends_at`` is set by a cancellation: the instant the
    subscription stops. ``last_revocation`` remembers the start of the latest suspension that
    took effect and was lifted. ``prior_end`` keeps the end of sessions of an earlier,
    lapsed subscription (its export window survives a new subscription). ``version`` is the
    store's optimistic-concurrency counter; rules never change it.
    """

    practitioner_id: str
    plan: Plan | None = None
    anchor: datetime | None = None
    paid_through: datetime | None = None
    trial_start: datetime | None = None
    trial_end: datetime | None = None
    cancelled_at: datetime | None = None
    ends_at: datetime | None = None
    suspension: Suspension | None = None
    last_revocation: datetime | None = None
    prior_end: datetime | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    """The answer of :func:`status`: state, access, a stable reason code and two instants.

    ``until`` is when the current access level is due to end by date (None: open-ended);
    ``changes_at`` is the next instant at which any part of this answer may change (None: never
    by the passage of time alone): re-check then, e.g. to end live sessions.
    """

    state: State
    access: Access
    reason: str
    until: datetime | None
    changes_at: datetime | None


Change = Callable[["Subscription | None", Iterable[datetime]], "Subscription"]
"""A transition as a store runs it inside its transaction: (current record or None, the
identity's earlier trial starts) → the new record. Pure; raising aborts (nothing changes)."""


# --- dates ----------------------------------------------------------------------------------


def utc(value: datetime, name: str = "instant") -> datetime:
    """``value`` in UTC; a naive datetime is an :class:`InvalidSubscriptionInput`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSubscriptionInput(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` calendar months, keeping its day of the month, clamped to
    the target month's last day (Jan 31 + 1 → Feb 28/29; Jan 31 + 2 → Mar 31)."""
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month0 = divmod(total, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return anchor.replace(year=year, month=month0 + 1, day=min(anchor.day, last))


def period_start(anchor: datetime, plan: Plan, k: int) -> datetime:
    """Start of period ``k`` (0 = the first) of a subscription anchored at ``anchor``."""
    return add_months(anchor, k * plan.months)


def period_index(anchor: datetime, plan: Plan, at: datetime) -> int:
    """The index of the period containing ``at`` (negative before the anchor)."""
    months = (at.year - anchor.year) * 12 + at.month - anchor.month
    k = months // plan.months
    while period_start(anchor, plan, k) > at:
        k -= 1
    while period_start(anchor, plan, k + 1) <= at:
        k += 1
    return k


def trial_eligible(previous_starts: Iterable[datetime], at: datetime) -> bool:
    """True when no earlier trial of this identity started within ``TRIAL_WINDOW_MONTHS`` before
    ``at`` (a trial exactly 24 calendar months ago no longer counts)."""
    at = utc(at, "at")
    return all(add_months(utc(s), TRIAL_WINDOW_MONTHS) <= at for s in previous_starts)


def sessions_end(sub: Subscription) -> datetime | None:
    """When paid sessions stop if no further payment arrives (None: nothing paid yet).

    A cancellation that ends within the paid time ends there; otherwise the renewal payment is
    awaited for ``PAYMENT_GRACE`` (but never beyond a cancellation's end).
    """
    if sub.anchor is None or sub.paid_through is None:
        return None
    if sub.ends_at is not None and sub.ends_at <= sub.paid_through:
        return sub.ends_at
    end = sub.paid_through + PAYMENT_GRACE
    return end if sub.ends_at is None else min(end, sub.ends_at)


def _ends(sub: Subscription) -> list[datetime]:
    """Every instant at which some period of sessions ended or will end."""
    ends = [e for e in (sub.trial_end, sub.prior_end) if e is not None]
    end = sessions_end(sub)
    if end is not None and sub.anchor is not None and end > sub.anchor:
        ends.append(end)
    return ends


# --- the decision ---------------------------------------------------------------------------


def status(sub: Subscription | None, now: datetime) -> Status:
    """State, access and reason of ``sub`` at ``now`` (None: no subscription record at all).

    Order of precedence: a suspension in effect always wins; then paid sessions; then a trial;
    then the export window after the latest end of sessions; then nothing.
    """
    now = utc(now, "now")
    if sub is None:
        return Status(State.NONE, Access.NONE, "no_subscription", None, None)
    state, access, reason, until = _decide(sub, now)
    return Status(state, access, reason, until, next_change(sub, now))


def access(sub: Subscription | None, now: datetime) -> Access:
    """Just the access level of :func:`status`."""
    return status(sub, now).access


def _decide(sub: Subscription, now: datetime) -> tuple[State, Access, str, datetime | None]:
    susp = sub.suspension
    if susp is not None and susp.since <= now:
        return State.SUSPENDED, Access.NONE, f"suspended_{susp.reason.value}", None
    end = sessions_end(sub)
    if sub.anchor is not None and sub.paid_through is not None and end is not None:
        if sub.anchor <= now < end:
            state = State.CANCELLED if sub.ends_at is not None else State.ACTIVE
            if now < sub.paid_through:
                reason = "cancelled_runs_to_end" if sub.ends_at is not None else "paid"
            elif susp is not None:
                reason = "payment_failed_grace"
            else:
                reason = "payment_pending"
            return state, Access.SESSIONS, reason, end
    if sub.trial_start is not None and sub.trial_end is not None:
        if sub.trial_start <= now < sub.trial_end:
            return State.TRIAL, Access.SESSIONS, "trial", sub.trial_end
    pending = sub.plan is not None and (
        sub.paid_through is None or (sub.anchor is not None and now < sub.anchor)
    )
    past = [e for e in _ends(sub) if e <= now]
    state = State.PENDING if pending else (State.EXPIRED if past else State.NONE)
    if past:
        lapse = max(past)
        export_end = add_months(lapse, EXPORT_MONTHS)
        if now < export_end:
            return state, Access.EXPORT_ONLY, "export_window", export_end
        return state, Access.NONE, "export_window_over", None
    return state, Access.NONE, "awaiting_payment" if pending else "no_subscription", None


def next_change(sub: Subscription, now: datetime) -> datetime | None:
    """The next instant after ``now`` at which :func:`status` may answer differently."""
    now = utc(now, "now")
    points = [sub.anchor, sub.paid_through, sessions_end(sub), sub.trial_start, sub.trial_end]
    if sub.suspension is not None:
        points.append(sub.suspension.since)
    points.extend(add_months(e, EXPORT_MONTHS) for e in _ends(sub))
    points.extend(_ends(sub))
    future = [p for p in points if p is not None and p > now]
    return min(future) if future else None


def revoked_after(sub: Subscription) -> datetime | None:
    """Tokens issued (``iat``) before this instant must be refused once it has passed.

    It is the start of the latest suspension, lifted or not. It may lie in the future while a
    non-payment grace runs: compare only when it is ``<= now`` (see :func:`token_revoked`).
    """
    points = [sub.last_revocation]
    if sub.suspension is not None:
        points.append(sub.suspension.since)
    present = [p for p in points if p is not None]
    return max(present) if present else None


def token_revoked(sub: Subscription | None, issued_at: datetime, now: datetime) -> bool:
    """True when a token issued at ``issued_at`` must be refused at ``now`` because of a
    suspension (in effect now, or lifted since but started after the token was issued)."""
    if sub is None:
        return False
    issued_at, now = utc(issued_at, "issued_at"), utc(now, "now")
    points = [sub.last_revocation]
    if sub.suspension is not None:
        points.append(sub.suspension.since)
    return any(p is not None and p <= now and issued_at < p for p in points)


# --- transitions ----------------------------------------------------------------------------


def start_trial(
    sub: Subscription | None,
    practitioner_id: str,
    at: datetime,
    identity_history: Iterable[datetime],
    *,
    days: int = DEFAULT_TRIAL_DAYS,
) -> Subscription:
    """Start a free trial of ``days`` days at ``at``.

    ``identity_history`` are the start instants of earlier trials of the same practitioner
    identity (across accounts). Refused with :class:`TrialNotAllowed` when one lies within 24
    months, when this account had a trial within 24 months, or when it already pays.
    """
    at = utc(at, "at")
    if not 1 <= days <= MAX_TRIAL_DAYS:
        raise InvalidSubscriptionInput(f"trial days must be in 1..{MAX_TRIAL_DAYS}")
    history = list(identity_history)
    if sub is not None and sub.trial_start is not None:
        history.append(sub.trial_start)
    if not trial_eligible(history, at):
        raise TrialNotAllowed("a free trial is allowed once per 24 months")
    if sub is not None and sub.suspension is not None and sub.suspension.since <= at:
        raise TrialNotAllowed("a suspended practitioner cannot start a trial")
    if sub is not None and _paid_running(sub, at):
        raise TrialNotAllowed("the practitioner already has a paid subscription")
    base = sub if sub is not None else Subscription(practitioner_id)
    return dataclasses.replace(base, trial_start=at, trial_end=at + timedelta(days=days))


def _paid_running(sub: Subscription, at: datetime) -> bool:
    end = sessions_end(sub)
    return end is not None and end > at


def subscribe(
    sub: Subscription | None, practitioner_id: str, plan: Plan, start: datetime, at: datetime
) -> Subscription:
    """Subscribe to ``plan`` with periods anchored at ``start`` (nothing paid yet).

    Subscribing again with the same plan and start is a no-op (a repeated provider event).
    While a paid subscription runs, another is :class:`AlreadySubscribed`. A lapsed or never
    paid subscription is replaced; its end of sessions is kept in ``prior_end`` so that its
    export window survives.
    """
    start, at = utc(start, "start"), utc(at, "at")
    plan = Plan(plan)
    if sub is None:
        return Subscription(practitioner_id, plan=plan, anchor=start)
    if sub.plan == plan and sub.anchor == start:
        return sub
    if _paid_running(sub, at):
        raise AlreadySubscribed("a subscription is running; cancel it first")
    ended = [e for e in (sub.prior_end, sessions_end(sub)) if e is not None]
    return dataclasses.replace(
        sub,
        plan=plan,
        anchor=start,
        paid_through=None,
        cancelled_at=None,
        ends_at=None,
        prior_end=max(ended) if ended else None,
    )


def record_payment(
    sub: Subscription | None, paid_period_start: datetime, at: datetime
) -> Subscription:
    """Mark the period starting at ``paid_period_start`` as paid (in advance).

    The period must be one of the subscription's, not after its end, and follow the paid time
    without a gap (:class:`PeriodMismatch`); an already paid period changes nothing. A payment
    clears a non-payment suspension (its start is remembered for token revocation).
    """
    paid_period_start, at = utc(paid_period_start, "period_start"), utc(at, "at")
    if sub is None or sub.plan is None or sub.anchor is None:
        raise NotSubscribed("no subscription to pay for")
    k = period_index(sub.anchor, sub.plan, paid_period_start)
    if k < 0 or period_start(sub.anchor, sub.plan, k) != paid_period_start:
        raise PeriodMismatch("period_start is not a period start of this subscription")
    end = period_start(sub.anchor, sub.plan, k + 1)
    paid = sub.paid_through or sub.anchor
    if end <= paid:
        return sub
    if paid_period_start > paid:
        raise PeriodMismatch("an earlier period is unpaid")
    if sub.ends_at is not None and paid_period_start >= sub.ends_at:
        raise PeriodMismatch("the period starts after the subscription's end")
    paid_sub = dataclasses.replace(sub, paid_through=end)
    if sub.suspension is not None and sub.suspension.reason is SuspensionReason.NON_PAYMENT:
        return _clear_suspension(paid_sub, at)
    return paid_sub


def record_payment_failure(sub: Subscription | None, at: datetime) -> Subscription:
    """A payment failed at ``at``: schedule a non-payment suspension at the end of the grace.

    The grace ends ``PAYMENT_GRACE`` after the paid time (or after the anchor when nothing was
    paid), and never before ``at``. An existing suspension (scheduled or in effect, for either
    reason) is kept as it is: repeated failures do not move the deadline.
    """
    at = utc(at, "at")
    if sub is None or sub.plan is None or sub.anchor is None:
        raise NotSubscribed("no subscription whose payment could fail")
    if sub.suspension is not None:
        return sub
    base = sub.paid_through or sub.anchor
    since = max(at, base + PAYMENT_GRACE)
    return dataclasses.replace(sub, suspension=Suspension(SuspensionReason.NON_PAYMENT, since))


def cancel(sub: Subscription | None, at: datetime) -> Subscription:
    """Cancel at ``at``: monthly at the end of the current period; annual at the end of the
    current period if at least ``ANNUAL_NOTICE`` before it, else at the end of the next one.

    Before the first period starts, the subscription ends at its start (it never runs).
    """
    at = utc(at, "at")
    if sub is None or sub.plan is None or sub.anchor is None:
        raise NotSubscribed("no subscription to cancel")
    if sub.ends_at is not None:
        raise AlreadyCancelled("the subscription is cancelled already")
    end = sessions_end(sub)
    if end is not None and end <= at:
        raise NotSubscribed("the subscription has ended already")
    return dataclasses.replace(
        sub, cancelled_at=at, ends_at=cancellation_end(sub.anchor, sub.plan, at)
    )


def cancellation_end(anchor: datetime, plan: Plan, at: datetime) -> datetime:
    """When a cancellation made at ``at`` takes effect (see :func:`cancel`)."""
    anchor, at = utc(anchor, "anchor"), utc(at, "at")
    if at < anchor:
        return anchor
    k = period_index(anchor, plan, at)
    renewal = period_start(anchor, plan, k + 1)
    if plan is Plan.ANNUAL and renewal - at < ANNUAL_NOTICE:
        return period_start(anchor, plan, k + 2)
    return renewal


def suspend(
    sub: Subscription | None, practitioner_id: str, reason: SuspensionReason, at: datetime
) -> Subscription:
    """Suspend at ``at`` (sessions and exports blocked at once).

    A scheduled (future) non-payment suspension is replaced by this one. A suspension already in
    effect keeps its start (tokens since then stay refused) and takes the new reason; the same
    reason again is :class:`AlreadySuspended`.
    """
    at = utc(at, "at")
    reason = SuspensionReason(reason)
    base = sub if sub is not None else Subscription(practitioner_id)
    current = base.suspension
    if current is not None and current.since <= at:
        if current.reason is reason:
            raise AlreadySuspended(f"already suspended ({reason.value})")
        return dataclasses.replace(base, suspension=Suspension(reason, current.since))
    return dataclasses.replace(base, suspension=Suspension(reason, at))


def lift(sub: Subscription | None, at: datetime) -> Subscription:
    """Lift the suspension (scheduled or in effect); the dates decide access again."""
    at = utc(at, "at")
    if sub is None:
        raise NoSubscription("no subscription record")
    if sub.suspension is None:
        raise NotSuspended("not suspended")
    return _clear_suspension(sub, at)


def _clear_suspension(sub: Subscription, at: datetime) -> Subscription:
    susp = sub.suspension
    revocation = sub.last_revocation
    if susp is not None and susp.since <= at:
        revocation = susp.since if revocation is None else max(revocation, susp.since)
    return dataclasses.replace(sub, suspension=None, last_revocation=revocation)

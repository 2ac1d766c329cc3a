"""The subscription store interface, implemented on SQLite and PostgreSQL, chosen by URL.

Tables (all prefixed, so the store can share a database with the journal or the accounts store):
``subscription_schema_version`` (migrations), ``subscriptions`` (one row per practitioner, with
an optimistic ``version`` and a ``change_seq`` for the change feed), ``subscription_events``
(processed webhook event ids) and ``subscription_trials`` (trial starts per identity hash).

Every state change is one transaction in :meth:`SubscriptionStore.update`: record the webhook
event id (a seen id → ``duplicate``, nothing else happens), read the row, run the pure
transition, write the row (and the trial history). Transactions that write are serialised (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so two deliveries of one
event can never both apply, and change sequence numbers commit in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fortrolig.accounts.subscription import (
    Change,
    Plan,
    Subscription,
    Suspension,
    SuspensionReason,
)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A webhook event to record as processed (its id is the idempotency key)."""

    event_id: str
    event_type: str
    practitioner_id: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """Outcome of :meth:`SubscriptionStore.update`.

    ``duplicate``: the event id was seen before, nothing ran. ``changed``: a new row version was
    written. ``subscription`` is the row after the update (None only for a duplicate of an
    event about a practitioner without a row).
    """

    subscription: Subscription | None
    changed: bool
    duplicate: bool
    change_seq: int


class SubscriptionStore(Protocol):
    """Persistence of subscriptions, processed webhook events and trial history."""

    @property
    def url(self) -> str:
        """Where the store lives (credentials removed)."""
        ...

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def schema_version(self) -> int:
        """The newest applied migration."""
        ...

    async def get(self, practitioner_id: str) -> Subscription | None:
        """One practitioner's subscription, or None."""
        ...

    async def update(
        self,
        practitioner_id: str,
        change: Change,
        *,
        event: EventRecord | None = None,
        trial_identity: str | None = None,
    ) -> UpdateResult:
        """Atomically: record ``event`` (if given), run ``change`` on the current row, write.

        ``trial_identity`` (a hash from :func:`identity_hash`) makes the store pass that
        identity's earlier trial starts to ``change`` and record a new trial start.
        """
        ...

    async def record_event(self, event: EventRecord) -> bool:
        """Record an event that changes no subscription; False if its id was seen before."""
        ...

    async def event_seen(self, event_id: str) -> bool:
        """True when the event id has been processed."""
        ...

    async def trial_starts(self, identity: str) -> list[datetime]:
        """Trial start instants of an identity hash, oldest first."""
        ...

    async def changes_since(self, seq: int, limit: int = 1000) -> list[tuple[int, str]]:
        """``(change_seq, practitioner_id)`` of rows changed after ``seq``, in order."""
        ...


def open_subscription_store(url: str) -> SubscriptionStore:
    """Choose the implementation by URL: ``postgresql://``/``postgres://`` vs SQLite.

    SQLite accepts ``sqlite:///abs/path.db``, ``sqlite://rel/path.db`` or a plain path. The
    store is not opened yet: ``await store.open()``.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from fortrolig.accounts.subscription_store_pg import PostgresSubscriptionStore

        return PostgresSubscriptionStore(url)
    from fortrolig.accounts.subscription_store_sqlite import SqliteSubscriptionStore

    return SqliteSubscriptionStore(sqlite_path(url))


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL or plain path (``sqlite:///abs`` is absolute)."""
    if not url.startswith("sqlite://"):
        return Path(url)
    rest = url.removeprefix("sqlite://")
    return Path(rest[1:] if rest.startswith("//") else rest)


def identity_hash(identity: str) -> str:
    """The stored form of a practitioner identity key (an e-mail, an eID pseudonym).

    SHA-256 over a domain-separated, case-folded key: the table never holds the address itself.
    It is a pseudonym, not anonymisation (a known address can be hashed and compared).
    """
    key = identity.strip().casefold()
    if not key:
        raise ValueError("identity must not be empty")
    return hashlib.sha256(b"fortrolig-trial-identity-v1\x00" + key.encode()).hexdigest()


# --- row codec, shared by both implementations -------------------------------------------------

COLUMN_NAMES = (
    "practitioner_id",
    "plan",
    "anchor_us",
    "paid_through_us",
    "trial_start_us",
    "trial_end_us",
    "cancelled_at_us",
    "ends_at_us",
    "suspension_reason",
    "suspension_since_us",
    "last_revocation_us",
    "prior_end_us",
    "version",
)
"""The subscription columns in :func:`to_row` order (both stores also keep ``change_seq`` and
``updated_us``)."""
COLUMNS = ", ".join(COLUMN_NAMES)


def to_us(value: datetime | None) -> int | None:
    """Microseconds since the epoch (None stays None)."""
    if value is None:
        return None
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    """The UTC datetime of microseconds since the epoch."""
    if value is None:
        return None
    seconds, micros = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def to_row(sub: Subscription) -> tuple[Any, ...]:
    """The column values of :data:`COLUMNS` for ``sub``."""
    susp = sub.suspension
    return (
        sub.practitioner_id,
        None if sub.plan is None else sub.plan.value,
        to_us(sub.anchor),
        to_us(sub.paid_through),
        to_us(sub.trial_start),
        to_us(sub.trial_end),
        to_us(sub.cancelled_at),
        to_us(sub.ends_at),
        None if susp is None else susp.reason.value,
        None if susp is None else to_us(susp.since),
        to_us(sub.last_revocation),
        to_us(sub.prior_end),
        sub.version,
    )


def from_row(r: Any) -> Subscription:
    """A :class:`Subscription` from a row of :data:`COLUMNS`."""
    since = from_us(r[9])
    suspension = None
    if r[8] is not None and since is not None:
        suspension = Suspension(SuspensionReason(r[8]), since)
    return Subscription(
        practitioner_id=r[0],
        plan=None if r[1] is None else Plan(r[1]),
        anchor=from_us(r[2]),
        paid_through=from_us(r[3]),
        trial_start=from_us(r[4]),
        trial_end=from_us(r[5]),
        cancelled_at=from_us(r[6]),
        ends_at=from_us(r[7]),
        suspension=suspension,
        last_revocation=from_us(r[10]),
        prior_end=from_us(r[11]),
        version=int(r[12]),
    )


def same_facts(a: Subscription | None, b: Subscription) -> bool:
    """True when ``b`` records the same facts as ``a`` (ignoring ``version``)."""
    return a is not None and to_row(a)[:-1] == to_row(b)[:-1]

"""PostgreSQL subscription store (asyncpg), for nodes that share one database.

The schema mirrors the SQLite one. Every writing transaction first takes one transaction-scoped
advisory lock: subscription writes are rare (webhooks, operators), and serialising them makes
read-modify-write safe, makes a repeated event id wait for the first delivery's commit (then
see it), and commits ``change_seq`` values in order for the change feed. Migrations take their
own advisory lock so several nodes can start at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from fortrolig.accounts.subscription import Change, Subscription
from fortrolig.accounts.subscription_store import (
    COLUMN_NAMES,
    COLUMNS,
    EventRecord,
    UpdateResult,
    from_row,
    from_us,
    same_facts,
    to_row,
    to_us,
)
from fortrolig.storage.pg_pool import PgPool

T = TypeVar("T")
# Arbitrary constants, distinct from the journal's 0x666F7274_0001/2 ("fort" + n).
_MIGRATION_LOCK = 0x666F7274_0101
_WRITE_LOCK = 0x666F7274_0102
SCHEMA_TABLE = "subscription_schema_version"

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE subscriptions (
                practitioner_id TEXT PRIMARY KEY, plan TEXT, anchor_us BIGINT,
                paid_through_us BIGINT, trial_start_us BIGINT, trial_end_us BIGINT,
                cancelled_at_us BIGINT, ends_at_us BIGINT, suspension_reason TEXT,
                suspension_since_us BIGINT, last_revocation_us BIGINT, prior_end_us BIGINT,
                version INTEGER NOT NULL, change_seq BIGINT NOT NULL UNIQUE,
                updated_us BIGINT NOT NULL)""",
            """CREATE TABLE subscription_events (
                event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, practitioner_id TEXT,
                received_us BIGINT NOT NULL)""",
            """CREATE TABLE subscription_trials (
                identity TEXT NOT NULL, practitioner_id TEXT NOT NULL,
                started_us BIGINT NOT NULL, PRIMARY KEY (identity, started_us))""",
        ],
    ),
]


class PostgresSubscriptionStore:
    """:class:`~fortrolig.accounts.subscription_store.SubscriptionStore` on PostgreSQL."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._db = PgPool(dsn, min_size=min_size, max_size=max_size)

    @property
    def url(self) -> str:
        """The DSN without password."""
        return self._db.url

    async def open(self) -> None:
        """Create the pool and migrate."""
        await self._db.open(_migrate)

    async def close(self) -> None:
        """Close the pool; idempotent."""
        await self._db.close()

    async def _tx(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, lock: int | None = _WRITE_LOCK
    ) -> T:
        return await self._db.tx(fn, lock=lock)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._db.pool.fetch(sql, *args)
        return rows

    async def schema_version(self) -> int:
        """The newest applied migration."""
        rows = await self._fetch(f"SELECT MAX(version) FROM {SCHEMA_TABLE}")
        return int(rows[0][0])

    async def get(self, practitioner_id: str) -> Subscription | None:
        """One practitioner's subscription."""
        sql = f"SELECT {COLUMNS} FROM subscriptions WHERE practitioner_id = $1"
        rows = await self._fetch(sql, practitioner_id)
        return from_row(rows[0]) if rows else None

    async def update(
        self,
        practitioner_id: str,
        change: Change,
        *,
        event: EventRecord | None = None,
        trial_identity: str | None = None,
    ) -> UpdateResult:
        """Record the event, run ``change`` on the row and write it, in one transaction."""

        async def op(c: asyncpg.Connection) -> UpdateResult:
            rows = await c.fetch(
                f"SELECT {COLUMNS} FROM subscriptions WHERE practitioner_id = $1", practitioner_id
            )
            current = from_row(rows[0]) if rows else None
            seq = int(await c.fetchval("SELECT COALESCE(MAX(change_seq), 0) FROM subscriptions"))
            if event is not None and not await _insert_event(c, event):
                return UpdateResult(current, changed=False, duplicate=True, change_seq=seq)
            history = [] if trial_identity is None else await _trials(c, trial_identity)
            new = change(current, history)
            if new.practitioner_id != practitioner_id:
                raise ValueError("a transition must not change the practitioner id")
            if same_facts(current, new):
                return UpdateResult(current, changed=False, duplicate=False, change_seq=seq)
            stored = await _write(c, current, new, seq + 1)
            if trial_identity is not None and new.trial_start is not None:
                if current is None or current.trial_start != new.trial_start:
                    await c.execute(
                        "INSERT INTO subscription_trials VALUES ($1, $2, $3)",
                        trial_identity,
                        practitioner_id,
                        to_us(new.trial_start),
                    )
            return UpdateResult(stored, changed=True, duplicate=False, change_seq=seq + 1)

        return await self._tx(op)

    async def record_event(self, event: EventRecord) -> bool:
        """Record an event that changes nothing; False if seen before."""
        return await self._tx(lambda c: _insert_event(c, event))

    async def event_seen(self, event_id: str) -> bool:
        """True when the event id was processed."""
        sql = "SELECT 1 FROM subscription_events WHERE event_id = $1"
        return bool(await self._fetch(sql, event_id))

    async def trial_starts(self, identity: str) -> list[datetime]:
        """An identity's trial starts, oldest first."""
        async with self._db.pool.acquire() as conn:
            return await _trials(conn, identity)

    async def changes_since(self, seq: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Rows changed after ``seq``."""
        sql = (
            "SELECT change_seq, practitioner_id FROM subscriptions WHERE change_seq > $1 "
            "ORDER BY change_seq LIMIT $2"
        )
        return [(int(r[0]), str(r[1])) for r in await self._fetch(sql, seq, limit)]


async def _migrate(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)"
    )
    current = await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}")
    for version, statements in MIGRATIONS:
        if version > current:
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} VALUES ($1, $2)", version, time.time_ns() // 1000
            )


async def _insert_event(c: asyncpg.Connection, event: EventRecord) -> bool:
    status = await c.execute(
        "INSERT INTO subscription_events VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        event.event_id,
        event.event_type,
        event.practitioner_id,
        to_us(event.received_at),
    )
    return bool(status == "INSERT 0 1")


async def _trials(c: asyncpg.Connection, identity: str) -> list[datetime]:
    rows = await c.fetch(
        "SELECT started_us FROM subscription_trials WHERE identity = $1 ORDER BY started_us",
        identity,
    )
    return [d for r in rows if (d := from_us(r[0])) is not None]


async def _write(
    c: asyncpg.Connection, current: Subscription | None, new: Subscription, seq: int
) -> Subscription:
    """Insert or compare-and-set the row; the stored version is the current one plus one."""
    version = 1 if current is None else current.version + 1
    stored = dataclasses.replace(new, version=version)
    values = (*to_row(stored), seq, time.time_ns() // 1000)
    if current is None:
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await c.execute(
            f"INSERT INTO subscriptions ({COLUMNS}, change_seq, updated_us) VALUES ({marks})",
            *values,
        )
        return stored
    names = [*COLUMN_NAMES[1:], "change_seq", "updated_us"]
    assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=1))
    n = len(names)
    status = await c.execute(
        f"UPDATE subscriptions SET {assignments} "
        f"WHERE practitioner_id = ${n + 1} AND version = ${n + 2}",
        *values[1:],
        new.practitioner_id,
        current.version,
    )
    if status != "UPDATE 1":
        raise RuntimeError("subscription row changed inside a locked write transaction")
    return stored

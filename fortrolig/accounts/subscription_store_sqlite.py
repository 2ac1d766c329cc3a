"""SQLite subscription store: the embedded default (one file, shareable with other stores).

WAL with ``synchronous=FULL`` (a committed change survives a crash). Each operation is one
transaction in a worker thread, serialised by an asyncio lock inside the process; writes use
``BEGIN IMMEDIATE`` so another process (the admin CLI) writing the same file is serialised too.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

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
from fortrolig.storage.sqlite_file import SqliteFile

T = TypeVar("T")

SCHEMA_TABLE = "subscription_schema_version"
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE subscriptions (
                practitioner_id TEXT PRIMARY KEY, plan TEXT, anchor_us INTEGER,
                paid_through_us INTEGER, trial_start_us INTEGER, trial_end_us INTEGER,
                cancelled_at_us INTEGER, ends_at_us INTEGER, suspension_reason TEXT,
                suspension_since_us INTEGER, last_revocation_us INTEGER, prior_end_us INTEGER,
                version INTEGER NOT NULL, change_seq INTEGER NOT NULL UNIQUE,
                updated_us INTEGER NOT NULL)""",
            """CREATE TABLE subscription_events (
                event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, practitioner_id TEXT,
                received_us INTEGER NOT NULL)""",
            """CREATE TABLE subscription_trials (
                identity TEXT NOT NULL, practitioner_id TEXT NOT NULL,
                started_us INTEGER NOT NULL, PRIMARY KEY (identity, started_us))""",
        ],
    ),
]


class SqliteSubscriptionStore:
    """:class:`~fortrolig.accounts.subscription_store.SubscriptionStore` on a SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path)

    @property
    def url(self) -> str:
        """``sqlite://<path>``."""
        return self._db.url

    async def open(self) -> None:
        """Open the file (created mode 0600) and migrate."""
        await self._db.open(_migrate)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._db.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        return await self._db.run(fn, write=write)

    async def schema_version(self) -> int:
        """The newest applied migration."""
        sql = f"SELECT MAX(version) FROM {SCHEMA_TABLE}"
        row = await self._run(lambda c: c.execute(sql).fetchone(), write=False)
        return int(row[0])

    async def get(self, practitioner_id: str) -> Subscription | None:
        """One practitioner's subscription."""
        return await self._run(lambda c: _get(c, practitioner_id), write=False)

    async def update(
        self,
        practitioner_id: str,
        change: Change,
        *,
        event: EventRecord | None = None,
        trial_identity: str | None = None,
    ) -> UpdateResult:
        """Record the event, run ``change`` on the row and write it, in one transaction."""

        def op(c: sqlite3.Connection) -> UpdateResult:
            current = _get(c, practitioner_id)
            seq = _head(c)
            if event is not None and not _insert_event(c, event):
                return UpdateResult(current, changed=False, duplicate=True, change_seq=seq)
            history = [] if trial_identity is None else _trials(c, trial_identity)
            new = change(current, history)
            if new.practitioner_id != practitioner_id:
                raise ValueError("a transition must not change the practitioner id")
            if same_facts(current, new):
                return UpdateResult(current, changed=False, duplicate=False, change_seq=seq)
            stored = _write(c, current, new, seq + 1)
            if trial_identity is not None and new.trial_start is not None:
                if current is None or current.trial_start != new.trial_start:
                    c.execute(
                        "INSERT INTO subscription_trials VALUES (?, ?, ?)",
                        (trial_identity, practitioner_id, to_us(new.trial_start)),
                    )
            return UpdateResult(stored, changed=True, duplicate=False, change_seq=seq + 1)

        return await self._run(op)

    async def record_event(self, event: EventRecord) -> bool:
        """Record an event that changes nothing; False if seen before."""
        return await self._run(lambda c: _insert_event(c, event))

    async def event_seen(self, event_id: str) -> bool:
        """True when the event id was processed."""
        sql = "SELECT 1 FROM subscription_events WHERE event_id = ?"
        row = await self._run(lambda c: c.execute(sql, (event_id,)).fetchone(), write=False)
        return row is not None

    async def trial_starts(self, identity: str) -> list[datetime]:
        """An identity's trial starts, oldest first."""
        return await self._run(lambda c: _trials(c, identity), write=False)

    async def changes_since(self, seq: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Rows changed after ``seq``."""
        sql = (
            "SELECT change_seq, practitioner_id FROM subscriptions WHERE change_seq > ? "
            "ORDER BY change_seq LIMIT ?"
        )
        rows = await self._run(lambda c: c.execute(sql, (seq, limit)).fetchall(), write=False)
        return [(int(r[0]), str(r[1])) for r in rows]


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)"
    )
    current = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}").fetchone()[0]
    for version, statements in MIGRATIONS:
        if version > current:
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?)", (version, time.time_ns() // 1000)
            )


def _get(c: sqlite3.Connection, practitioner_id: str) -> Subscription | None:
    sql = f"SELECT {COLUMNS} FROM subscriptions WHERE practitioner_id = ?"
    row = c.execute(sql, (practitioner_id,)).fetchone()
    return None if row is None else from_row(row)


def _head(c: sqlite3.Connection) -> int:
    return int(c.execute("SELECT COALESCE(MAX(change_seq), 0) FROM subscriptions").fetchone()[0])


def _insert_event(c: sqlite3.Connection, event: EventRecord) -> bool:
    cur = c.execute(
        "INSERT OR IGNORE INTO subscription_events VALUES (?, ?, ?, ?)",
        (event.event_id, event.event_type, event.practitioner_id, to_us(event.received_at)),
    )
    return cur.rowcount == 1


def _trials(c: sqlite3.Connection, identity: str) -> list[datetime]:
    sql = "SELECT started_us FROM subscription_trials WHERE identity = ? ORDER BY started_us"
    return [d for (us,) in c.execute(sql, (identity,)).fetchall() if (d := from_us(us))]


def _write(
    c: sqlite3.Connection, current: Subscription | None, new: Subscription, seq: int
) -> Subscription:
    """Insert or compare-and-set the row; the stored version is the current one plus one."""
    version = 1 if current is None else current.version + 1
    stored = dataclasses.replace(new, version=version)
    values = (*to_row(stored), seq, time.time_ns() // 1000)
    if current is None:
        marks = ", ".join("?" * len(values))
        c.execute(
            f"INSERT INTO subscriptions ({COLUMNS}, change_seq, updated_us) VALUES ({marks})",
            values,
        )
        return stored
    names = [*COLUMN_NAMES[1:], "change_seq", "updated_us"]
    assignments = ", ".join(f"{n} = ?" for n in names)
    cur = c.execute(
        f"UPDATE subscriptions SET {assignments} WHERE practitioner_id = ? AND version = ?",
        (*values[1:], new.practitioner_id, current.version),
    )
    if cur.rowcount != 1:
        raise RuntimeError("subscription row changed inside a write transaction")
    return stored

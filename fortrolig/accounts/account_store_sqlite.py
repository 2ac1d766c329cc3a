"""SQLite account store: the embedded default (one file in the data directory).

As the journal's SQLite store: one connection, WAL with ``synchronous=FULL``, each operation one
``BEGIN IMMEDIATE`` transaction in a worker thread, serialised by an asyncio lock. IMMEDIATE takes
the write lock up front, so check-then-write sequences (throttle counters, TOTP steps, refresh
rotation) are atomic also against another process using the same file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from fortrolig.accounts.account_store import (
    PRACTITIONER_COLUMNS,
    SCHEMA_TABLE,
    from_us,
    practitioner_from_row,
    refresh_from_row,
    to_us,
)
from fortrolig.accounts.practitioners import (
    EmailTaken,
    PractitionerRow,
    RefreshOutcome,
    RefreshVerdict,
    ThrottleCounter,
    ThrottleKey,
    counted_attempt,
    judge_refresh,
    throttle_wait,
)
from fortrolig.storage.sqlite_file import SqliteFile

T = TypeVar("T")

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE account_practitioners (
                id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
                password_hash TEXT NOT NULL, totp_sealed BLOB,
                totp_enrolled INTEGER NOT NULL DEFAULT 0, totp_last_step INTEGER,
                created_us INTEGER NOT NULL, revoked_after_us INTEGER)""",
            """CREATE TABLE account_refresh_families (
                id TEXT PRIMARY KEY,
                practitioner_id TEXT NOT NULL REFERENCES account_practitioners (id),
                created_us INTEGER NOT NULL, expires_us INTEGER NOT NULL, revoked_us INTEGER)""",
            "CREATE INDEX account_families_by_practitioner "
            "ON account_refresh_families (practitioner_id)",
            """CREATE TABLE account_refresh_tokens (
                hash TEXT PRIMARY KEY,
                family_id TEXT NOT NULL REFERENCES account_refresh_families (id),
                issued_us INTEGER NOT NULL, used_us INTEGER)""",
            "CREATE INDEX account_tokens_by_family ON account_refresh_tokens (family_id)",
            """CREATE TABLE account_throttle (
                key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_us INTEGER NOT NULL,
                locked_until_us INTEGER NOT NULL)""",
        ],
    ),
]

_REVOKE_ALL = (
    "UPDATE account_refresh_families SET revoked_us = ? "
    "WHERE practitioner_id = ? AND revoked_us IS NULL"
)


class SqliteAccountStore:
    """:class:`~fortrolig.accounts.account_store.AccountStore` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        # secure_delete: old password hashes do not linger in free pages.
        self._db = SqliteFile(path, pragmas=("foreign_keys=ON", "secure_delete=ON"), dir_mode=0o700)

    @property
    def url(self) -> str:
        """``sqlite://`` and the file path."""
        return self._db.url

    async def open(self) -> None:
        """Open the file (created mode 0600) and migrate."""
        await self._db.open(_migrate)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._db.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._db.run(fn)
        except sqlite3.IntegrityError as exc:
            if "account_practitioners.email" in str(exc):
                raise EmailTaken("an account with this e-mail exists already") from None
            raise

    async def schema_version(self) -> int:
        """The newest applied migration."""
        sql = f"SELECT MAX(version) FROM {SCHEMA_TABLE}"
        return int(await self._run(lambda c: c.execute(sql).fetchone()[0]))

    # --- accounts ------------------------------------------------------------------------------

    async def create_practitioner(self, row: PractitionerRow) -> None:
        """Insert an account."""
        values = (
            row.id,
            row.email,
            row.display_name,
            row.password_hash,
            row.totp_sealed,
            int(row.totp_enrolled),
            row.totp_last_step,
            to_us(row.created_at),
            None if row.revoked_after is None else to_us(row.revoked_after),
        )
        sql = (
            f"INSERT INTO account_practitioners ({PRACTITIONER_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        await self._run(lambda c: c.execute(sql, values))

    async def get_practitioner(self, practitioner_id: str) -> PractitionerRow | None:
        """One account by id."""
        return await self._one("id", practitioner_id)

    async def find_by_email(self, email: str) -> PractitionerRow | None:
        """One account by normalised e-mail."""
        return await self._one("email", email)

    async def _one(self, column: str, value: str) -> PractitionerRow | None:
        sql = f"SELECT {PRACTITIONER_COLUMNS} FROM account_practitioners WHERE {column} = ?"
        found = await self._run(lambda c: c.execute(sql, (value,)).fetchone())
        return None if found is None else practitioner_from_row(found)

    async def replace_password_hash(self, practitioner_id: str, old: str, new: str) -> bool:
        """Compare-and-set the hash."""
        sql = (
            "UPDATE account_practitioners SET password_hash = ? WHERE id = ? AND password_hash = ?"
        )
        return await self._run(lambda c: c.execute(sql, (new, practitioner_id, old)).rowcount == 1)

    async def set_display_name(self, practitioner_id: str, display_name: str) -> bool:
        """Replace the display name."""
        sql = "UPDATE account_practitioners SET display_name = ? WHERE id = ?"
        return await self._run(
            lambda c: c.execute(sql, (display_name, practitioner_id)).rowcount == 1
        )

    async def change_password(
        self, practitioner_id: str, old: str, new: str, revoked_after: float, now: float
    ) -> bool:
        """New hash, cut-off and revoked sessions in one transaction."""

        def op(c: sqlite3.Connection) -> bool:
            changed = c.execute(
                "UPDATE account_practitioners SET password_hash = ?, revoked_after_us = ? "
                "WHERE id = ? AND password_hash = ?",
                (new, to_us(revoked_after), practitioner_id, old),
            ).rowcount
            if changed != 1:
                return False
            c.execute(_REVOKE_ALL, (to_us(now), practitioner_id))
            return True

        return await self._run(op)

    async def revoked_after(self, practitioner_id: str) -> float | None:
        """The account's token cut-off."""
        sql = "SELECT revoked_after_us FROM account_practitioners WHERE id = ?"
        found = await self._run(lambda c: c.execute(sql, (practitioner_id,)).fetchone())
        return None if found is None else from_us(found[0])

    # --- second factor -------------------------------------------------------------------------

    async def set_pending_totp(self, practitioner_id: str, sealed: bytes) -> bool:
        """Store a pending secret unless enrolled."""
        sql = "UPDATE account_practitioners SET totp_sealed = ? WHERE id = ? AND totp_enrolled = 0"
        return await self._run(lambda c: c.execute(sql, (sealed, practitioner_id)).rowcount == 1)

    async def confirm_totp(self, practitioner_id: str, sealed: bytes, step: int) -> bool:
        """Enrol with the pending secret, spending ``step``."""
        sql = (
            "UPDATE account_practitioners SET totp_enrolled = 1, totp_last_step = ? "
            "WHERE id = ? AND totp_enrolled = 0 AND totp_sealed = ? "
            "AND (totp_last_step IS NULL OR totp_last_step < ?)"
        )
        args = (step, practitioner_id, sealed, step)
        return await self._run(lambda c: c.execute(sql, args).rowcount == 1)

    async def consume_totp_step(self, practitioner_id: str, step: int) -> bool:
        """Spend ``step`` if it is later than the last one spent."""
        sql = (
            "UPDATE account_practitioners SET totp_last_step = ? "
            "WHERE id = ? AND totp_enrolled = 1 "
            "AND (totp_last_step IS NULL OR totp_last_step < ?)"
        )
        args = (step, practitioner_id, step)
        return await self._run(lambda c: c.execute(sql, args).rowcount == 1)

    async def reset_totp(self, practitioner_id: str, revoked_after: float, now: float) -> bool:
        """Forget the second factor and end every session."""

        def op(c: sqlite3.Connection) -> bool:
            changed = c.execute(
                "UPDATE account_practitioners SET totp_sealed = NULL, totp_enrolled = 0, "
                "revoked_after_us = ? WHERE id = ?",
                (to_us(revoked_after), practitioner_id),
            ).rowcount
            c.execute(_REVOKE_ALL, (to_us(now), practitioner_id))
            return bool(changed == 1)

        return await self._run(op)

    # --- throttling ----------------------------------------------------------------------------

    async def register_attempt(self, keys: Sequence[ThrottleKey], now: float) -> float:
        """Count an attempt under every key unless one is locked."""

        def op(c: sqlite3.Connection) -> float:
            counters = {k.key: _counter(c, k.key) for k in keys}
            wait = max((throttle_wait(counters[k.key], k.policy, now) for k in keys), default=0.0)
            if wait > 0:
                return wait
            for k in keys:
                new = counted_attempt(counters[k.key], k.policy, now)
                c.execute(
                    "INSERT INTO account_throttle VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET failures = excluded.failures, last_us = excluded.last_us, "
                    "locked_until_us = excluded.locked_until_us",
                    (k.key, new.failures, to_us(new.last_attempt), to_us(new.locked_until)),
                )
            return 0.0

        return await self._run(op)

    async def failures(self, key: str) -> int:
        """The failures counted under ``key``."""

        def op(c: sqlite3.Connection) -> int:
            found = _counter(c, key)
            return found.failures if found is not None else 0

        return await self._run(op)

    async def clear_attempts(self, keys: Sequence[str]) -> None:
        """Delete the counters."""

        def op(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM account_throttle WHERE key = ?", [(k,) for k in keys])

        await self._run(op)

    # --- refresh tokens ------------------------------------------------------------------------

    async def start_family(
        self,
        family_id: str,
        practitioner_id: str,
        token_hash: str,
        now: float,
        expires_at: float,
    ) -> None:
        """A new family and its first token."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO account_refresh_families VALUES (?, ?, ?, ?, NULL)",
                (family_id, practitioner_id, to_us(now), to_us(expires_at)),
            )
            c.execute(
                "INSERT INTO account_refresh_tokens VALUES (?, ?, ?, NULL)",
                (token_hash, family_id, to_us(now)),
            )

        await self._run(op)

    async def rotate_refresh(self, token_hash: str, new_hash: str, now: float) -> RefreshOutcome:
        """Judge, then rotate or revoke, in one transaction."""

        def op(c: sqlite3.Connection) -> RefreshOutcome:
            found = c.execute(
                "SELECT t.family_id, f.practitioner_id, t.used_us, f.expires_us, f.revoked_us "
                "FROM account_refresh_tokens t JOIN account_refresh_families f "
                "ON f.id = t.family_id WHERE t.hash = ?",
                (token_hash,),
            ).fetchone()
            record = None if found is None else refresh_from_row(found)
            verdict = judge_refresh(record, now)
            if record is None:
                return RefreshOutcome(verdict)
            if verdict is RefreshVerdict.REUSED:
                c.execute(
                    "UPDATE account_refresh_families SET revoked_us = ? WHERE id = ?",
                    (to_us(now), record.family_id),
                )
            elif verdict is RefreshVerdict.ROTATE:
                c.execute(
                    "UPDATE account_refresh_tokens SET used_us = ? WHERE hash = ?",
                    (to_us(now), token_hash),
                )
                c.execute(
                    "INSERT INTO account_refresh_tokens VALUES (?, ?, ?, NULL)",
                    (new_hash, record.family_id, to_us(now)),
                )
            return RefreshOutcome(verdict, record.practitioner_id, record.family_expires_at)

        return await self._run(op)

    async def revoke_family_of(self, token_hash: str, now: float) -> bool:
        """Logout: revoke the token's family."""
        sql = (
            "UPDATE account_refresh_families SET revoked_us = ? WHERE revoked_us IS NULL AND id = "
            "(SELECT family_id FROM account_refresh_tokens WHERE hash = ?)"
        )
        return await self._run(lambda c: c.execute(sql, (to_us(now), token_hash)).rowcount == 1)

    async def purge(self, now: float, keep_s: float) -> int:
        """Drop long-dead families (with their tokens) and forgotten throttle counters."""
        cutoff = to_us(now - keep_s)

        def op(c: sqlite3.Connection) -> int:
            dead = "SELECT id FROM account_refresh_families WHERE expires_us < ? OR revoked_us < ?"
            c.execute(
                f"DELETE FROM account_refresh_tokens WHERE family_id IN ({dead})", (cutoff,) * 2
            )
            removed = c.execute(
                "DELETE FROM account_refresh_families WHERE expires_us < ? OR revoked_us < ?",
                (cutoff, cutoff),
            ).rowcount
            c.execute("DELETE FROM account_throttle WHERE last_us < ?", (cutoff,))
            return int(removed)

        return await self._run(op)


def _counter(c: sqlite3.Connection, key: str) -> ThrottleCounter | None:
    found = c.execute(
        "SELECT failures, last_us, locked_until_us FROM account_throttle WHERE key = ?", (key,)
    ).fetchone()
    if found is None:
        return None
    return ThrottleCounter(found[0], found[1] / 1e6, found[2] / 1e6)


def _migrate(c: sqlite3.Connection) -> None:
    c.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)"
    )
    current = c.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}").fetchone()[0]
    for version, statements in MIGRATIONS:
        if version > current:
            for statement in statements:
                c.execute(statement)
            c.execute(
                f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?)", (version, time.time_ns() // 1000)
            )

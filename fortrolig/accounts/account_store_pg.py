"""PostgreSQL account store (asyncpg), for nodes that share one database.

The schema mirrors the SQLite one. Conditional UPDATEs (TOTP steps, compare-and-set of hashes) are
atomic under PostgreSQL's row locks: a second concurrent UPDATE waits and re-checks its WHERE
clause against the committed row. Read-decide-write sequences lock their rows first
(``SELECT … FOR UPDATE``, throttle keys in sorted order so two requests cannot deadlock).
Migrations take an advisory lock of their own, so several nodes may start at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

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
from fortrolig.storage.pg_pool import PgPool

T = TypeVar("T")
_MIGRATION_LOCK = 0x666F7274_0A01  # "fort" + accounts 1: distinct from the journal's locks

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE account_practitioners (
                id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
                password_hash TEXT NOT NULL, totp_sealed BYTEA,
                totp_enrolled BOOLEAN NOT NULL DEFAULT FALSE, totp_last_step BIGINT,
                created_us BIGINT NOT NULL, revoked_after_us BIGINT)""",
            """CREATE TABLE account_refresh_families (
                id TEXT PRIMARY KEY,
                practitioner_id TEXT NOT NULL REFERENCES account_practitioners (id),
                created_us BIGINT NOT NULL, expires_us BIGINT NOT NULL, revoked_us BIGINT)""",
            "CREATE INDEX account_families_by_practitioner "
            "ON account_refresh_families (practitioner_id)",
            """CREATE TABLE account_refresh_tokens (
                hash TEXT PRIMARY KEY,
                family_id TEXT NOT NULL REFERENCES account_refresh_families (id),
                issued_us BIGINT NOT NULL, used_us BIGINT)""",
            "CREATE INDEX account_tokens_by_family ON account_refresh_tokens (family_id)",
            """CREATE TABLE account_throttle (
                key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_us BIGINT NOT NULL,
                locked_until_us BIGINT NOT NULL)""",
        ],
    ),
]

_REVOKE_ALL = (
    "UPDATE account_refresh_families SET revoked_us = $1 "
    "WHERE practitioner_id = $2 AND revoked_us IS NULL"
)


def _updated(status: str) -> int:
    """The row count of an ``UPDATE n`` / ``DELETE n`` command status."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresAccountStore:
    """:class:`~fortrolig.accounts.account_store.AccountStore` on PostgreSQL via asyncpg."""

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

    async def _tx(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            return await self._db.tx(fn)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "account_practitioners_email_key":
                raise EmailTaken("an account with this e-mail exists already") from None
            raise

    async def _execute(self, sql: str, *args: Any) -> int:
        return _updated(await self._db.pool.execute(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._db.pool.fetchrow(sql, *args)

    async def schema_version(self) -> int:
        """The newest applied migration."""
        found = await self._fetchrow(f"SELECT MAX(version) FROM {SCHEMA_TABLE}")
        assert found is not None
        return int(found[0])

    # --- accounts ------------------------------------------------------------------------------

    async def create_practitioner(self, row: PractitionerRow) -> None:
        """Insert an account."""
        sql = (
            f"INSERT INTO account_practitioners ({PRACTITIONER_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        revoked = None if row.revoked_after is None else to_us(row.revoked_after)
        args = (
            row.id,
            row.email,
            row.display_name,
            row.password_hash,
            row.totp_sealed,
            row.totp_enrolled,
            row.totp_last_step,
            to_us(row.created_at),
            revoked,
        )

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(sql, *args)

        await self._tx(op)

    async def get_practitioner(self, practitioner_id: str) -> PractitionerRow | None:
        """One account by id."""
        found = await self._fetchrow(
            f"SELECT {PRACTITIONER_COLUMNS} FROM account_practitioners WHERE id = $1",
            practitioner_id,
        )
        return None if found is None else practitioner_from_row(found)

    async def find_by_email(self, email: str) -> PractitionerRow | None:
        """One account by normalised e-mail."""
        found = await self._fetchrow(
            f"SELECT {PRACTITIONER_COLUMNS} FROM account_practitioners WHERE email = $1", email
        )
        return None if found is None else practitioner_from_row(found)

    async def replace_password_hash(self, practitioner_id: str, old: str, new: str) -> bool:
        """Compare-and-set the hash."""
        sql = (
            "UPDATE account_practitioners SET password_hash = $1 "
            "WHERE id = $2 AND password_hash = $3"
        )
        return await self._execute(sql, new, practitioner_id, old) == 1

    async def set_display_name(self, practitioner_id: str, display_name: str) -> bool:
        """Replace the display name."""
        sql = "UPDATE account_practitioners SET display_name = $1 WHERE id = $2"
        return await self._execute(sql, display_name, practitioner_id) == 1

    async def change_password(
        self, practitioner_id: str, old: str, new: str, revoked_after: float, now: float
    ) -> bool:
        """New hash, cut-off and revoked sessions in one transaction."""

        async def op(c: asyncpg.Connection) -> bool:
            status = await c.execute(
                "UPDATE account_practitioners SET password_hash = $1, revoked_after_us = $2 "
                "WHERE id = $3 AND password_hash = $4",
                new,
                to_us(revoked_after),
                practitioner_id,
                old,
            )
            if _updated(status) != 1:
                return False
            await c.execute(_REVOKE_ALL, to_us(now), practitioner_id)
            return True

        return await self._tx(op)

    async def revoked_after(self, practitioner_id: str) -> float | None:
        """The account's token cut-off."""
        found = await self._fetchrow(
            "SELECT revoked_after_us FROM account_practitioners WHERE id = $1", practitioner_id
        )
        return None if found is None else from_us(found[0])

    # --- second factor -------------------------------------------------------------------------

    async def set_pending_totp(self, practitioner_id: str, sealed: bytes) -> bool:
        """Store a pending secret unless enrolled."""
        sql = (
            "UPDATE account_practitioners SET totp_sealed = $1 WHERE id = $2 AND NOT totp_enrolled"
        )
        return await self._execute(sql, sealed, practitioner_id) == 1

    async def confirm_totp(self, practitioner_id: str, sealed: bytes, step: int) -> bool:
        """Enrol with the pending secret, spending ``step``."""
        sql = (
            "UPDATE account_practitioners SET totp_enrolled = TRUE, totp_last_step = $1 "
            "WHERE id = $2 AND NOT totp_enrolled AND totp_sealed = $3 "
            "AND (totp_last_step IS NULL OR totp_last_step < $1)"
        )
        return await self._execute(sql, step, practitioner_id, sealed) == 1

    async def consume_totp_step(self, practitioner_id: str, step: int) -> bool:
        """Spend ``step`` if it is later than the last one spent."""
        sql = (
            "UPDATE account_practitioners SET totp_last_step = $1 "
            "WHERE id = $2 AND totp_enrolled "
            "AND (totp_last_step IS NULL OR totp_last_step < $1)"
        )
        return await self._execute(sql, step, practitioner_id) == 1

    async def reset_totp(self, practitioner_id: str, revoked_after: float, now: float) -> bool:
        """Forget the second factor and end every session."""

        async def op(c: asyncpg.Connection) -> bool:
            status = await c.execute(
                "UPDATE account_practitioners SET totp_sealed = NULL, totp_enrolled = FALSE, "
                "revoked_after_us = $1 WHERE id = $2",
                to_us(revoked_after),
                practitioner_id,
            )
            await c.execute(_REVOKE_ALL, to_us(now), practitioner_id)
            return _updated(status) == 1

        return await self._tx(op)

    # --- throttling ----------------------------------------------------------------------------

    async def register_attempt(self, keys: Sequence[ThrottleKey], now: float) -> float:
        """Count an attempt under every key unless one is locked."""
        ordered = sorted(keys, key=lambda k: k.key)

        async def op(c: asyncpg.Connection) -> float:
            # Make every row exist, then lock them all (sorted: no deadlock between requests).
            await c.executemany(
                "INSERT INTO account_throttle VALUES ($1, 0, $2, 0) ON CONFLICT (key) DO NOTHING",
                [(k.key, to_us(now)) for k in ordered],
            )
            rows = await c.fetch(
                "SELECT key, failures, last_us, locked_until_us FROM account_throttle "
                "WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE",
                [k.key for k in ordered],
            )
            # A row can be gone by now (a success cleared it): that key starts from zero.
            counters = {r[0]: _counter(r) for r in rows}
            wait = max(
                (throttle_wait(counters.get(k.key), k.policy, now) for k in ordered), default=0
            )
            if wait > 0:
                return float(wait)
            for k in ordered:
                new = counted_attempt(counters.get(k.key), k.policy, now)
                await c.execute(
                    "INSERT INTO account_throttle VALUES ($1, $2, $3, $4) ON CONFLICT (key) "
                    "DO UPDATE SET failures = excluded.failures, last_us = excluded.last_us, "
                    "locked_until_us = excluded.locked_until_us",
                    k.key,
                    new.failures,
                    to_us(new.last_attempt),
                    to_us(new.locked_until),
                )
            return 0.0

        return await self._tx(op)

    async def failures(self, key: str) -> int:
        """The failures counted under ``key``."""

        async def op(c: asyncpg.Connection) -> int:
            found = await c.fetchval("SELECT failures FROM account_throttle WHERE key = $1", key)
            return int(found) if found is not None else 0

        return await self._tx(op)

    async def clear_attempts(self, keys: Sequence[str]) -> None:
        """Delete the counters, in key order like :meth:`register_attempt` (no deadlock)."""

        async def op(c: asyncpg.Connection) -> None:
            for key in sorted(keys):
                await c.execute("DELETE FROM account_throttle WHERE key = $1", key)

        await self._tx(op)

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

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(
                "INSERT INTO account_refresh_families VALUES ($1, $2, $3, $4, NULL)",
                family_id,
                practitioner_id,
                to_us(now),
                to_us(expires_at),
            )
            await c.execute(
                "INSERT INTO account_refresh_tokens VALUES ($1, $2, $3, NULL)",
                token_hash,
                family_id,
                to_us(now),
            )

        await self._tx(op)

    async def rotate_refresh(self, token_hash: str, new_hash: str, now: float) -> RefreshOutcome:
        """Judge, then rotate or revoke, in one transaction (token and family rows locked)."""

        async def op(c: asyncpg.Connection) -> RefreshOutcome:
            found = await c.fetchrow(
                "SELECT t.family_id, f.practitioner_id, t.used_us, f.expires_us, f.revoked_us "
                "FROM account_refresh_tokens t JOIN account_refresh_families f "
                "ON f.id = t.family_id WHERE t.hash = $1 FOR UPDATE",
                token_hash,
            )
            record = None if found is None else refresh_from_row(found)
            verdict = judge_refresh(record, now)
            if record is None:
                return RefreshOutcome(verdict)
            if verdict is RefreshVerdict.REUSED:
                await c.execute(
                    "UPDATE account_refresh_families SET revoked_us = $1 WHERE id = $2",
                    to_us(now),
                    record.family_id,
                )
            elif verdict is RefreshVerdict.ROTATE:
                await c.execute(
                    "UPDATE account_refresh_tokens SET used_us = $1 WHERE hash = $2",
                    to_us(now),
                    token_hash,
                )
                await c.execute(
                    "INSERT INTO account_refresh_tokens VALUES ($1, $2, $3, NULL)",
                    new_hash,
                    record.family_id,
                    to_us(now),
                )
            return RefreshOutcome(verdict, record.practitioner_id, record.family_expires_at)

        return await self._tx(op)

    async def revoke_family_of(self, token_hash: str, now: float) -> bool:
        """Logout: revoke the token's family."""
        sql = (
            "UPDATE account_refresh_families SET revoked_us = $1 WHERE revoked_us IS NULL AND "
            "id = (SELECT family_id FROM account_refresh_tokens WHERE hash = $2)"
        )
        return await self._execute(sql, to_us(now), token_hash) == 1

    async def purge(self, now: float, keep_s: float) -> int:
        """Drop long-dead families (with their tokens) and forgotten throttle counters."""
        cutoff = to_us(now - keep_s)

        async def op(c: asyncpg.Connection) -> int:
            dead = (
                "SELECT id FROM account_refresh_families WHERE expires_us < $1 OR revoked_us < $1"
            )
            await c.execute(
                f"DELETE FROM account_refresh_tokens WHERE family_id IN ({dead})", cutoff
            )
            status = await c.execute(
                "DELETE FROM account_refresh_families WHERE expires_us < $1 OR revoked_us < $1",
                cutoff,
            )
            await c.execute("DELETE FROM account_throttle WHERE last_us < $1", cutoff)
            return _updated(status)

        return await self._tx(op)


def _counter(r: asyncpg.Record) -> ThrottleCounter | None:
    if r[1] == 0 and r[3] == 0:
        return None  # the placeholder row inserted just now
    return ThrottleCounter(int(r[1]), r[2] / 1e6, r[3] / 1e6)


async def _migrate(c: asyncpg.Connection) -> None:
    await c.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    await c.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
        "(version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)"
    )
    current = await c.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}")
    for version, statements in MIGRATIONS:
        if version > current:
            for statement in statements:
                await c.execute(statement)
            await c.execute(
                f"INSERT INTO {SCHEMA_TABLE} VALUES ($1, $2)", version, time.time_ns() // 1000
            )

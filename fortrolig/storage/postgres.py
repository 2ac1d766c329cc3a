"""The :class:`~fortrolig.storage.database.Database` interface on PostgreSQL (asyncpg).

Queries are written once with ``?`` placeholders (see :mod:`fortrolig.storage.database`) and
rewritten here to asyncpg's ``$n``. Migrations of all nodes sharing the database are serialised
by a transaction-scoped advisory lock, so two nodes starting together never migrate twice.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from .database import MIGRATIONS_TABLE, Dialect, Migration, Row, apply_migrations
from .pg_pool import PgPool

T = TypeVar("T")

MIGRATION_LOCK = 0x46_52_54_4C_4D  # "FRTLM": the advisory lock held while migrating
_PLACEHOLDER = re.compile(r"\?")
_ROWCOUNT = re.compile(r"(\d+)$")


@functools.lru_cache(maxsize=512)
def to_numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (no query of ours has a ``?`` in a literal)."""
    counter = iter(range(1, 1 << 16))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


class _PgTx:
    """A transaction on one pooled connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status = await self._conn.execute(to_numbered(sql), *args)
        found = _ROWCOUNT.search(str(status))
        return int(found.group(1)) if found else 0

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(to_numbered(sql), *args)
        return row

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(to_numbered(sql), *args))


class PgDatabase:
    """A PostgreSQL database shared by the stores of every node."""

    def __init__(self, dsn: str, *, max_size: int = 10) -> None:
        self._pool = PgPool(dsn, min_size=1, max_size=max_size)

    @property
    def dialect(self) -> Dialect:
        return "postgresql"

    @property
    def url(self) -> str:
        return self._pool.url

    async def open(self) -> None:
        async def create(conn: asyncpg.Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(MIGRATIONS_TABLE)

        await self._pool.open(create)

    async def close(self) -> None:
        await self._pool.close()

    async def tx(self, fn: Callable[[_PgTx], Awaitable[T]], *, write: bool = True) -> T:
        async with self._pool.pool.acquire() as conn, conn.transaction(readonly=not write):
            return await fn(_PgTx(conn))

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        async def run(tx: _PgTx) -> int:
            await tx.execute("SELECT pg_advisory_xact_lock(?)", MIGRATION_LOCK)
            return await apply_migrations(tx, component, migrations)

        return await self.tx(run)

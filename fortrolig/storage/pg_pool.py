"""The pool lifecycle of one PostgreSQL database (the storage layer's PostgreSQL side).

Used directly by the accounts and subscription stores and through
:class:`~fortrolig.storage.postgres.PgDatabase` by the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from fortrolig.core.dsn import redact

T = TypeVar("T")


class PgPool:
    """The pool lifecycle and transactions of one PostgreSQL database."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._sizes = (min_size, max_size)
        self._closed = False

    @property
    def url(self) -> str:
        """The DSN without password."""
        return redact(self._dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool (for single statements outside a transaction)."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self, migrate: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Create the pool and run ``migrate`` in a transaction."""
        if self._closed:
            raise RuntimeError("store is closed")
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._sizes[0], max_size=self._sizes[1]
            )
        await self.tx(migrate)

    async def close(self) -> None:
        """Close the pool; idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def tx(
        self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, lock: int | None = None
    ) -> T:
        """Run ``fn`` in one transaction, first taking advisory lock ``lock`` if given."""
        async with self.pool.acquire() as conn, conn.transaction():
            if lock is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
            return await fn(conn)

"""The :class:`~fortrolig.storage.database.Database` interface on one SQLite file.

One connection (WAL, ``synchronous=FULL``: a transaction is on disk when COMMIT returns), used
from worker threads, one transaction at a time behind an asyncio lock (:class:`SqliteFile`).
Write transactions take the write lock up front (``BEGIN IMMEDIATE``), so a read-modify-write is
atomic also against another process on the same file (the admin CLI).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .database import MIGRATIONS_TABLE, Dialect, Migration, Row, apply_migrations
from .sqlite_file import SqliteFile

T = TypeVar("T")


class _SqliteTx:
    """A transaction on the one connection; each statement runs in a worker thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await asyncio.to_thread(self._conn.execute, sql, args)
        return int(cursor.rowcount)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        def one() -> Row | None:
            row: Row | None = self._conn.execute(sql, args).fetchone()
            return row

        return await asyncio.to_thread(one)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        def rows() -> list[Row]:
            return list(self._conn.execute(sql, args).fetchall())

        return await asyncio.to_thread(rows)


class SqliteDatabase:
    """One SQLite file (created mode 0600 in a 0700 directory) shared by a node's stores."""

    def __init__(self, path: Path) -> None:
        # secure_delete: removed rows (used codes, expired logins) do not linger in free pages.
        self._file = SqliteFile(path, pragmas=("secure_delete=ON",), dir_mode=0o700)

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    @property
    def url(self) -> str:
        return self._file.url

    @property
    def path(self) -> Path:
        """The database file."""
        return self._file.path

    async def open(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.execute(MIGRATIONS_TABLE)

        await self._file.open(create)

    async def close(self) -> None:
        await self._file.close()

    async def tx(self, fn: Callable[[_SqliteTx], Awaitable[T]], *, write: bool = True) -> T:
        async with self._file.lock:
            conn = self._file.connection
            await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = await fn(_SqliteTx(conn))
            except BaseException:
                await asyncio.to_thread(conn.execute, "ROLLBACK")
                raise
            await asyncio.to_thread(conn.execute, "COMMIT")
            return result

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        # BEGIN IMMEDIATE holds the file's write lock: two processes never migrate at once.
        return await self.tx(lambda tx: apply_migrations(tx, component, migrations))

"""The connection lifecycle of one SQLite file (the storage layer's SQLite side).

Used directly by the accounts and subscription stores and through
:class:`~fortrolig.storage.sqlite.SqliteDatabase` by the others.

A single connection (WAL, synchronous=FULL) used from worker threads, one transaction at a time
behind an asyncio lock; writes take the write lock up front (``BEGIN IMMEDIATE``) so a
read-modify-write cannot interleave with another process (the admin CLI) on the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteFile:
    """The connection lifecycle and transactions of one SQLite database file."""

    def __init__(self, path: Path, *, pragmas: Sequence[str] = (), dir_mode: int = 0o777) -> None:
        self.path = path
        self._pragmas = tuple(pragmas)
        self._dir_mode = dir_mode
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        """``sqlite://<path>``."""
        return f"sqlite://{self.path}"

    @property
    def lock(self) -> asyncio.Lock:
        """Held for the length of one transaction."""
        return self._lock

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection (use it only while holding :attr:`lock`)."""
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def open(self, migrate: Callable[[sqlite3.Connection], None]) -> None:
        """Open the file (created mode 0600) and run ``migrate`` in a write transaction."""
        if self._closed:
            raise RuntimeError("store is closed")
        if self._conn is None:
            self._conn = await asyncio.to_thread(self._connect)
        await self.run(migrate)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=self._dir_mode, parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for pragma in self._pragmas:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    async def close(self) -> None:
        """Close the connection; idempotent."""
        self._closed = True
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction (rolled back if it raises)."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("store is not open")
            return await asyncio.to_thread(_transaction, conn, fn, write)


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result

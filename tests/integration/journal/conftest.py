"""Fixtures for the journal integration tests: a real PostgreSQL and SQLite, one suite for both.

The PostgreSQL server is started once per session from Debian's ``postgresql-15`` binaries on a
temporary directory and a free loopback port; each test gets a fresh database. Missing binaries
make the PostgreSQL tests fail (not skip), so CI cannot silently test SQLite only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import Principal
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store, sqlite_path
from tests.conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL of each backend (one PostgreSQL server per session)."""
    return await fresh_database(request, tmp_path, "journal")


@pytest.fixture
def clock() -> FakeClock:
    """A controllable clock (2023-11-14)."""
    return FakeClock()


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    """A fresh file keyring."""
    return FileKeyring.open(tmp_path / "keys" / "journal-keyring.json")


@pytest.fixture
async def service(
    store_url: str, keyring: FileKeyring, clock: FakeClock
) -> AsyncIterator[JournalService]:
    """A started journal service on each backend."""
    svc = JournalService(open_store(store_url), keyring, clock)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
def alice() -> Principal:
    """A practitioner."""
    return Principal("prac_alice", "practitioner")


@pytest.fixture
def bob() -> Principal:
    """Another practitioner."""
    return Principal("prac_bob", "practitioner")


class RawDb:
    """Raw SQL against a store's database, bypassing the store: what an intruder could do."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_pg = url.startswith("postgresql://")

    async def execute(self, sql: str) -> None:
        """Run one statement (no parameters; tests inline literals)."""
        if self.is_pg:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()
            return
        with sqlite3.connect(sqlite_path(self.url), isolation_level=None) as conn:
            conn.execute(sql)
        conn.close()

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query."""
        if self.is_pg:
            conn = await asyncpg.connect(self.url)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()
        conn2 = sqlite3.connect(sqlite_path(self.url))
        try:
            return [tuple(r) for r in conn2.execute(sql).fetchall()]
        finally:
            conn2.close()

    def blob(self, data: bytes) -> str:
        """A bytes literal in this dialect."""
        return f"'\\x{data.hex()}'::bytea" if self.is_pg else f"X'{data.hex()}'"

    async def drop_guards(self, table: str) -> None:
        """Remove a table's append-only triggers (as a database owner could)."""
        if self.is_pg:
            await self.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            return
        rows = await self.fetch(
            f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'"
        )
        for (name,) in rows:
            await self.execute(f"DROP TRIGGER {name}")


@pytest.fixture
def raw(store_url: str) -> RawDb:
    """Raw access to the test database."""
    return RawDb(store_url)

"""Fixtures for the subscription store tests: one suite on a real SQLite and PostgreSQL.

PostgreSQL comes from :class:`fortrolig.journal.testing.TempPostgres` (Debian's binaries on a
temporary directory and a free loopback port), once per session; each test gets a fresh
database. Missing binaries fail the PostgreSQL tests rather than skipping them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from fortrolig.accounts.subscription_service import SubscriptionService
from fortrolig.accounts.subscription_store import open_subscription_store
from fortrolig.core.clock import FakeClock
from fortrolig.journal.testing import PostgresUnavailable, TempPostgres

SECRET = b"w" * 32
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def sub_pg_server() -> Iterator[TempPostgres]:
    """One PostgreSQL server for the session."""
    try:
        server = TempPostgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL of each backend."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'accounts.db'}"
        return
    server: TempPostgres = request.getfixturevalue("sub_pg_server")
    name = f"subscriptions_{next(_db_counter)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield server.dsn_for(name)


@pytest.fixture
def clock() -> FakeClock:
    """A controllable clock (2023-11-14T22:13:20Z)."""
    return FakeClock(now=1_700_000_000.0)


@pytest.fixture
async def service(store_url: str, clock: FakeClock) -> AsyncIterator[SubscriptionService]:
    """A started service on each backend, with a webhook secret."""
    svc = SubscriptionService(open_subscription_store(store_url), clock, webhook_secrets=[SECRET])
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()

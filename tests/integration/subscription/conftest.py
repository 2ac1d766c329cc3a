"""Fixtures for the subscription store tests: one suite on a real SQLite and PostgreSQL.

PostgreSQL comes from :class:`tests.support.postgres_server.TempPostgres` (Debian's binaries on a
temporary directory and a free loopback port), once per session; each test gets a fresh
database. Missing binaries fail the PostgreSQL tests rather than skipping them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fortrolig.accounts.subscription_service import SubscriptionService
from fortrolig.accounts.subscription_store import open_subscription_store
from fortrolig.core.clock import FakeClock
from tests.conftest import fresh_database

SECRET = b"w" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL of each backend (one PostgreSQL server per session)."""
    return await fresh_database(request, tmp_path, "subscriptions")


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

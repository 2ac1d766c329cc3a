"""Fixtures for the account tests: one suite on real SQLite and a real PostgreSQL.

The PostgreSQL server (Debian's binaries, :class:`fortrolig.journal.testing.TempPostgres`) starts
once per session; each test gets a fresh database. Missing binaries fail the tests (no skip).
Access tokens are minted by the real :class:`~fortrolig.signaling.auth.TokenIssuer`, through the
same small adapter the composition root uses.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from accounts_support import ISSUER, IssuerMinter, make_service

from fortrolig.accounts.account_service import AccountService
from fortrolig.core.clock import FakeClock
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.journal.testing import PostgresUnavailable, TempPostgres
from fortrolig.signaling.auth import MemoryJtiStore, TokenIssuer, TokenVerifier

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    """One PostgreSQL server for the whole session."""
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
        yield f"sqlite:///{tmp_path / 'accounts.db'}"
        return
    server: TempPostgres = request.getfixturevalue("pg_server")
    name = f"accounts_{next(_db_counter)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    yield server.dsn_for(name)


@pytest.fixture
def clock() -> FakeClock:
    """A controllable clock, placed mid-way through a TOTP step."""
    return FakeClock(now=1_700_000_010.0)


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def verifier(signing_key: SigningKey, clock: FakeClock) -> TokenVerifier:
    keyset = KeySet.of(signing_key.public_key)
    return TokenVerifier(keyset, ISSUER, clock, 30, MemoryJtiStore(clock))


@pytest.fixture
def minter(signing_key: SigningKey, clock: FakeClock) -> IssuerMinter:
    return IssuerMinter(TokenIssuer(signing_key, ISSUER, clock))


@pytest.fixture
async def service(
    store_url: str, tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> AsyncIterator[AccountService]:
    """A started account service (fast test Argon2 parameters) on each backend."""
    svc = make_service(store_url, tmp_path, clock, minter)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()

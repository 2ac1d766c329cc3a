"""Fixtures for the account tests: one suite on real SQLite and a real PostgreSQL.

The PostgreSQL server (Debian's binaries, :class:`tests.support.postgres_server.TempPostgres`)
starts once per session; each test gets a fresh database. Missing binaries fail the tests (no skip).
Access tokens are minted by the real :class:`~fortrolig.signaling.auth.TokenIssuer`, through the
same small adapter the composition root uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from accounts_support import ISSUER, IssuerMinter, make_service

from fortrolig.accounts.account_service import AccountService
from fortrolig.core.clock import FakeClock
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.signaling.auth import MemoryJtiStore, TokenIssuer, TokenVerifier
from tests.conftest import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL of each backend (one PostgreSQL server per session)."""
    return await fresh_database(request, tmp_path, "accounts")


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

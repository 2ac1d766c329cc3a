"""Persistence of onboarding: e-mail confirmation, single-use links and recovery codes.

Built on the shared storage layer (:mod:`fortrolig.storage`): each query is written once for
SQLite and PostgreSQL, each operation is one transaction. Only SHA-256 digests of link tokens and
recovery codes are stored; spending one is a conditional ``UPDATE ... WHERE used_us IS NULL``,
so of two concurrent uses exactly one succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fortrolig.storage import open_database
from fortrolig.storage.database import Database, Migration, Tx, ddl

COMPONENT: Final = "onboarding"
DEFAULT_FILE: Final = "onboarding.db"
"""The embedded default's file in the data directory (PostgreSQL: the accounts' database)."""

_SCHEMA = (
    """CREATE TABLE onboard_confirmed (
        practitioner_id TEXT PRIMARY KEY, confirmed_us {int64} NOT NULL)""",
    """CREATE TABLE onboard_links (
        hash TEXT PRIMARY KEY, purpose TEXT NOT NULL, practitioner_id TEXT NOT NULL,
        created_us {int64} NOT NULL, expires_us {int64} NOT NULL, used_us {int64})""",
    "CREATE INDEX onboard_links_by_owner ON onboard_links (practitioner_id, purpose)",
    """CREATE TABLE onboard_recovery (
        hash TEXT PRIMARY KEY, practitioner_id TEXT NOT NULL, created_us {int64} NOT NULL,
        used_us {int64})""",
    "CREATE INDEX onboard_recovery_by_owner ON onboard_recovery (practitioner_id)",
)


def to_us(t: float) -> int:
    """Seconds as integer microseconds."""
    return round(t * 1_000_000)


def open_onboarding_store(data_dir: Path, database_url: str | None) -> OnboardingStore:
    """The store beside the accounts: the accounts' PostgreSQL database when ``database_url``
    names one, else ``<data_dir>/onboarding.db``. Not connected yet."""
    url = database_url or ""
    if url.startswith("sqlite"):
        url = ""  # the accounts' own SQLite file is theirs alone
    return OnboardingStore(open_database(url, data_dir / DEFAULT_FILE))


class OnboardingStore:
    """The onboarding tables on one :class:`~fortrolig.storage.database.Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self) -> None:
        """Connect and migrate (idempotent)."""
        await self._db.open()
        await self._db.migrate(
            COMPONENT, [Migration(1, tuple(ddl(s, self._db.dialect) for s in _SCHEMA))]
        )

    async def close(self) -> None:
        """Release the database; idempotent."""
        await self._db.close()

    async def is_confirmed(self, practitioner_id: str) -> bool:
        """Whether the account's e-mail address was confirmed by its link."""

        async def run(tx: Tx) -> bool:
            row = await tx.fetchone(
                "SELECT 1 FROM onboard_confirmed WHERE practitioner_id = ?", practitioner_id
            )
            return row is not None

        return await self._db.tx(run, write=False)

    async def mark_confirmed(self, practitioner_id: str, now: float) -> None:
        """Record the confirmation (repeating it changes nothing)."""

        async def run(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO onboard_confirmed (practitioner_id, confirmed_us) VALUES (?, ?) "
                "ON CONFLICT (practitioner_id) DO NOTHING",
                practitioner_id,
                to_us(now),
            )

        await self._db.tx(run)

    async def add_link(
        self, digest: str, purpose: str, practitioner_id: str, now: float, expires: float
    ) -> None:
        """Store a new link; earlier unused links of the same purpose stop working."""

        async def run(tx: Tx) -> None:
            await tx.execute(
                "UPDATE onboard_links SET used_us = ? "
                "WHERE practitioner_id = ? AND purpose = ? AND used_us IS NULL",
                to_us(now),
                practitioner_id,
                purpose,
            )
            await tx.execute(
                "INSERT INTO onboard_links "
                "(hash, purpose, practitioner_id, created_us, expires_us) VALUES (?, ?, ?, ?, ?)",
                digest,
                purpose,
                practitioner_id,
                to_us(now),
                to_us(expires),
            )

        await self._db.tx(run)

    async def link_owner(self, digest: str, purpose: str, now: float) -> str | None:
        """The account of an unused, unexpired link, without spending it."""

        async def run(tx: Tx) -> str | None:
            row = await tx.fetchone(
                "SELECT practitioner_id FROM onboard_links WHERE hash = ? AND purpose = ? "
                "AND used_us IS NULL AND expires_us > ?",
                digest,
                purpose,
                to_us(now),
            )
            return None if row is None else str(row[0])

        return await self._db.tx(run, write=False)

    async def spend_link(self, digest: str, purpose: str, now: float) -> str | None:
        """Mark an unused, unexpired link used; its account id, or None (unknown, used, expired)."""

        async def run(tx: Tx) -> str | None:
            row = await tx.fetchone(
                "SELECT practitioner_id FROM onboard_links WHERE hash = ? AND purpose = ? "
                "AND used_us IS NULL AND expires_us > ?",
                digest,
                purpose,
                to_us(now),
            )
            if row is None:
                return None
            changed = await tx.execute(
                "UPDATE onboard_links SET used_us = ? WHERE hash = ? AND used_us IS NULL",
                to_us(now),
                digest,
            )
            return str(row[0]) if changed == 1 else None

        return await self._db.tx(run)

    async def replace_recovery(self, practitioner_id: str, digests: list[str], now: float) -> None:
        """Forget the account's recovery codes and store a new set."""

        async def run(tx: Tx) -> None:
            await tx.execute(
                "DELETE FROM onboard_recovery WHERE practitioner_id = ?", practitioner_id
            )
            for digest in digests:
                await tx.execute(
                    "INSERT INTO onboard_recovery (hash, practitioner_id, created_us) "
                    "VALUES (?, ?, ?)",
                    digest,
                    practitioner_id,
                    to_us(now),
                )

        await self._db.tx(run)

    async def spend_recovery(self, practitioner_id: str, digest: str, now: float) -> bool:
        """Mark one unused recovery code of the account used; False if there is none."""

        async def run(tx: Tx) -> bool:
            changed = await tx.execute(
                "UPDATE onboard_recovery SET used_us = ? "
                "WHERE hash = ? AND practitioner_id = ? AND used_us IS NULL",
                to_us(now),
                digest,
                practitioner_id,
            )
            return changed == 1

        return await self._db.tx(run)

    async def recovery_left(self, practitioner_id: str) -> int:
        """How many unused recovery codes the account has."""

        async def run(tx: Tx) -> int:
            row = await tx.fetchone(
                "SELECT COUNT(*) FROM onboard_recovery "
                "WHERE practitioner_id = ? AND used_us IS NULL",
                practitioner_id,
            )
            return int(row[0]) if row is not None else 0

        return await self._db.tx(run, write=False)

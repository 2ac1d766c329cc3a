"""``fortrolig backup create | restore | verify`` as plain functions over a journal source.

Design (docs/security.md, "Backups and erasure"): a backup holds the journal database as it was
— ciphertext, wrapped data keys, the erasure list of that moment — encrypted once more under
the backup key. It never holds the keyring (the KEK file), so a stolen backup file with its key
is still sealed. The erasure list that counts is the *live* one: restore reads the tombstones
from the journal it replaces and applies them to the image before the database is swapped in
(SQLite) or in the same transaction (PostgreSQL), so a client erased after the backup was made
stays erased. The bound for backup files at rest is the backup retention period (docs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fortrolig.backup import archive
from fortrolig.backup.archive import Manifest
from fortrolig.backup.errors import BackupUnsupported, RestoreTargetNotEmpty
from fortrolig.core.errors import ConfigError
from fortrolig.journal import backup_pg, backup_sqlite
from fortrolig.journal.factory import default_database_url
from fortrolig.journal.model import Erasure
from fortrolig.journal.store import sqlite_path


@dataclass(frozen=True)
class Source:
    """Where the journal lives: a SQLite file or a PostgreSQL URL."""

    kind: str  # "sqlite" | "postgresql"
    location: str  # file path or URL

    @classmethod
    def of(cls, data_dir: Path, database_url: str | None) -> Source:
        """The journal of a node: ``database_url`` or the embedded SQLite default."""
        url = database_url or default_database_url(data_dir)
        if url.startswith(("postgresql://", "postgres://")):
            return cls("postgresql", url)
        return cls("sqlite", str(sqlite_path(url)))


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did."""

    manifest: Manifest
    erasures_applied: int


async def create(source: Source, key_path: Path, out: Path, *, new_key: bool = False) -> Manifest:
    """Write an encrypted backup of ``source`` to ``out`` (``new_key``: make the key file).

    Blocking work (the snapshot, ``pg_dump``, encryption) runs in a worker thread.
    """
    key = archive.new_key_file(key_path) if new_key else archive.read_key_file(key_path)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return await asyncio.to_thread(
        archive.write_backup,
        out,
        _contents(source),
        key=key,
        source_kind=source.kind,
        created_at=created,
    )


def _contents(source: Source) -> Iterator[bytes]:
    if source.kind == "postgresql":
        yield from backup_pg.dump(source.location)
        return
    path = Path(source.location)
    if not path.is_file():
        raise ConfigError(f"no journal database at {path}")
    yield backup_sqlite.snapshot(path)


def verify(backup: Path, key_path: Path) -> Manifest:
    """Check ``backup`` end to end without restoring it."""
    return archive.verify(backup, archive.read_key_file(key_path))


async def restore(
    backup: Path, key_path: Path, target: Source, *, force: bool = False
) -> RestoreReport:
    """Restore ``backup`` into ``target`` (the node stopped), re-applying the live erasures.

    Everything is checked first (key, manifest, every segment, checksum, source kind, an empty
    target or ``force``); any refusal leaves the target untouched.
    """
    key = archive.read_key_file(key_path)
    manifest, image = await asyncio.to_thread(archive.read_all, backup, key)
    if manifest.source_kind != target.kind:
        raise BackupUnsupported(
            f"a {manifest.source_kind} backup cannot be restored into a {target.kind} journal"
        )
    if target.kind == "postgresql":
        return await _restore_pg(manifest, image, target.location, force)
    path = Path(target.location)
    if not force and not backup_sqlite.is_empty(path):
        raise _not_empty(str(path))
    tombstones = backup_sqlite.read_erasures(path)
    await asyncio.to_thread(backup_sqlite.restore, path, image, tombstones)
    return RestoreReport(manifest, len(tombstones))


async def _restore_pg(manifest: Manifest, image: bytes, url: str, force: bool) -> RestoreReport:
    if not force and not await backup_pg.is_empty(url):
        raise _not_empty("the PostgreSQL journal database")
    tombstones: list[Erasure] = await backup_pg.read_erasures(url)
    await asyncio.to_thread(backup_pg.restore, url, image, tombstones)
    return RestoreReport(manifest, len(tombstones))


def _not_empty(where: str) -> RestoreTargetNotEmpty:
    return RestoreTargetNotEmpty(
        f"{where} holds a journal already; stop the node and pass --force to replace it "
        "(erasures recorded there are re-applied to the restored copy)"
    )

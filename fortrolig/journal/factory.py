"""Building a started :class:`JournalService` from a data directory or a database URL."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from fortrolig.core.aead import IntegrityError
from fortrolig.core.clock import Clock, SystemClock
from fortrolig.core.errors import ConfigError
from fortrolig.journal.keyring import ReloadingKeyring
from fortrolig.journal.retention import DEFAULT_RETENTION_YEARS
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store, sqlite_path

log = logging.getLogger(__name__)
DB_FILE = "journal.db"
KEYRING_FILE = "keys/journal-keyring.json"


def default_database_url(data_dir: Path) -> str:
    """The embedded default: ``sqlite:///<absolute data_dir>/journal.db``."""
    return f"sqlite://{(data_dir / DB_FILE).resolve()}"


def default_keyring_path(data_dir: Path) -> Path:
    """The KEK file ``<data_dir>/keys/journal-keyring.json`` (mode 0600, made on first start)."""
    return data_dir / KEYRING_FILE


async def open_journal(
    data_dir: Path,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    clock: Clock | None = None,
    retention_years: int = DEFAULT_RETENTION_YEARS,
    create: bool = True,
) -> JournalService:
    """Open (creating and migrating as needed) the journal; the caller must ``await close()``.

    ``database_url`` defaults to SQLite in ``data_dir``; a ``postgresql://`` URL selects
    PostgreSQL. The keyring defaults to a file in ``data_dir`` created on first start; it is
    re-read when another process (``fortrolig keys rotate``) changes it. A keyring that cannot open
    the database's keys is a :class:`ConfigError`: the node must not start half-blind. With
    ``create=False`` (operator commands) a missing keyring or SQLite file is a ConfigError too.
    """
    path = keyring_path or default_keyring_path(data_dir)
    url = database_url or default_database_url(data_dir)
    new_keyring = not path.exists()
    keyring = ReloadingKeyring(path, create=create)
    if not create and not url.startswith(("postgresql://", "postgres://")):
        if not sqlite_path(url).is_file():
            raise ConfigError(f"no journal database at {sqlite_path(url)}")
    store = open_store(url)
    service = JournalService(
        store, keyring, clock or SystemClock(), retention_years=retention_years
    )
    try:
        await service.start()
    except IntegrityError as exc:
        await service.close()
        if new_keyring:
            # Made just now for a database that already has keys: it wrapped nothing, and left
            # behind it would hide that the right keyring is missing at the next start.
            path.unlink(missing_ok=True)
        raise ConfigError(
            f"journal keyring {path} cannot open the keys of the journal database "
            f"{store.url} ({exc.message}); check journal.keyring_path and journal.database_url"
        ) from None
    except BaseException:
        await service.close()
        raise
    return service


async def retention_loop(service: JournalService, *, interval_s: float = 86_400.0) -> None:
    """Run retention now and then every ``interval_s`` until cancelled (an app cleanup_ctx task).

    A failed run is logged and retried at the next interval; it never stops the loop.
    """
    while True:
        try:
            report = await service.retention(dry_run=False, actor="scheduler:retention")
            if report.erased:
                log.info("retention erased %d journal(s)", report.erased)
        except Exception:
            log.exception("journal retention run failed; retrying in %.0f s", interval_s)
        await asyncio.sleep(interval_s)

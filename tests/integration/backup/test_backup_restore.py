"""Backups of a real journal on SQLite and PostgreSQL: round trip, and erasure reaches them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fortrolig.backup import archive, service
from fortrolig.backup.errors import BackupCorrupt, BackupWrongKey, RestoreTargetNotEmpty
from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import Principal
from fortrolig.journal.errors import ClientNotFound
from fortrolig.journal.model import AuditEvent
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store, sqlite_path
from tests.conftest import fresh_database

ALICE = Principal("prac_alice", "practitioner")
Opener = Callable[[], Awaitable[JournalService]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty journal database of each backend."""
    return await fresh_database(request, tmp_path, "backup")


@pytest.fixture
def source(store_url: str) -> service.Source:
    if store_url.startswith("postgresql://"):
        return service.Source("postgresql", store_url)
    return service.Source("sqlite", str(sqlite_path(store_url)))


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "offsite" / "backup.key"
    archive.new_key_file(path)
    return path


@pytest.fixture
async def opener(store_url: str, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens the journal (a node start); every service opened is closed at the end."""
    keyring = FileKeyring.open(tmp_path / "keys" / "journal-keyring.json")
    opened: list[JournalService] = []

    async def open_service() -> JournalService:
        svc = JournalService(open_store(store_url), keyring, FakeClock())
        await svc.start()
        opened.append(svc)
        return svc

    yield open_service
    for svc in opened:
        await svc.close()


async def _client(svc: JournalService, name: str, notes: int = 2) -> str:
    client = await svc.create_client(ALICE, name, f"{name}@example.dk")
    for i in range(notes):
        await svc.add_note(ALICE, client.id, f"{name}: session {i}")
    return client.id


async def _erase(svc: JournalService, client_id: str) -> None:
    event = AuditEvent(1_700_000_000_000_000, "test", "journal.erase", client_id, "request")
    assert await svc.store.erase_client(client_id, event)


async def test_round_trip(
    opener: Opener, source: service.Source, key_path: Path, tmp_path: Path
) -> None:
    svc = await opener()
    kept = await _client(svc, "karen")
    out = tmp_path / "b1.fbak"
    manifest = await service.create(source, key_path, out)
    assert manifest.source_kind == source.kind
    assert service.verify(out, key_path) == manifest
    await svc.add_note(ALICE, kept, "written after the backup")
    await svc.close()

    report = await service.restore(out, key_path, source, force=True)
    assert report.erasures_applied == 0
    svc = await opener()
    journal = await svc.read_journal(ALICE, kept, "care")
    assert [n.text for n in journal.notes] == ["karen: session 0", "karen: session 1"]
    assert (await svc.verify_audit()).ok


async def test_restore_never_resurrects_an_erased_client(
    opener: Opener, source: service.Source, key_path: Path, tmp_path: Path
) -> None:
    svc = await opener()
    erased, kept = await _client(svc, "erik"), await _client(svc, "karen")
    out = tmp_path / "before-erasure.fbak"
    await service.create(source, key_path, out)  # erik's notes and wrapped key are in it
    await _erase(svc, erased)
    await svc.close()

    report = await service.restore(out, key_path, source, force=True)
    assert report.erasures_applied == 1
    svc = await opener()
    with pytest.raises(ClientNotFound):
        await svc.read_journal(ALICE, erased, "care")
    assert await svc.store.get_keys(erased) == []  # no key left to unwrap anything with
    assert await svc.store.list_notes(erased) == []
    assert [c.id for c in await svc.list_clients(ALICE)] == [kept]
    assert [n.text for n in (await svc.read_journal(ALICE, kept, "care")).notes] == [
        "karen: session 0",
        "karen: session 1",
    ]
    # The erasure is still recorded, so restoring the old backup once more erases again.
    await svc.close()
    again = await service.restore(out, key_path, source, force=True)
    assert again.erasures_applied == 1
    svc = await opener()
    assert await svc.store.get_client(erased) is None


async def test_refusals_change_nothing(
    opener: Opener, source: service.Source, key_path: Path, tmp_path: Path
) -> None:
    svc = await opener()
    kept = await _client(svc, "karen", notes=1)
    out = tmp_path / "b.fbak"
    await service.create(source, key_path, out)
    await svc.add_note(ALICE, kept, "after")
    await svc.close()

    with pytest.raises(RestoreTargetNotEmpty):
        await service.restore(out, key_path, source)
    other = tmp_path / "other.key"
    archive.new_key_file(other)
    with pytest.raises(BackupWrongKey):
        await service.restore(out, other, source, force=True)
    out.write_bytes(out.read_bytes()[:-10])
    with pytest.raises(BackupCorrupt):
        await service.restore(out, key_path, source, force=True)

    svc = await opener()
    notes = (await svc.read_journal(ALICE, kept, "care")).notes
    assert [n.text for n in notes] == ["karen: session 0", "after"]


async def test_restore_into_an_empty_target(
    opener: Opener, source: service.Source, key_path: Path, tmp_path: Path, store_url: str
) -> None:
    if source.kind == "postgresql":
        pytest.skip("the empty-target path on PostgreSQL is the fresh-database fixture itself")
    svc = await opener()
    kept = await _client(svc, "karen", notes=1)
    out = tmp_path / "b.fbak"
    await service.create(source, key_path, out)
    await svc.close()
    db = Path(source.location)
    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    await service.restore(out, key_path, source)  # no --force needed: nothing to overwrite
    svc = await opener()
    assert len((await svc.read_journal(ALICE, kept, "care")).notes) == 1

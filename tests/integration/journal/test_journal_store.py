"""The journal on real SQLite and PostgreSQL: one suite, both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fortrolig.core.aead import FileKeyring, IntegrityError
from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import Principal
from fortrolig.journal.errors import (
    AnonymousClient,
    AppendOnlyViolation,
    ClientNotFound,
    DuplicateRecord,
    InvalidEntry,
    InvalidPurpose,
    JournalForbidden,
    NoteNotFound,
)
from fortrolig.journal.export import read_zip
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store

YEAR = 365 * 86_400


async def _client_with_notes(
    service: JournalService, who: Principal, name: str = "Søren Ærø Ødegård", notes: int = 2
) -> tuple[str, list[str]]:
    client = await service.create_client(who, name, "søren@example.dk")
    ids = [
        (await service.add_note(who, client.id, f"Session {i}: ængstelig, søvn bedre")).id
        for i in range(notes)
    ]
    return client.id, ids


async def test_schema_is_migrated_and_reopen_is_idempotent(
    service: JournalService, store_url: str, keyring: FileKeyring, clock: FakeClock
) -> None:
    assert await service.store.schema_version() == 2
    again = JournalService(open_store(store_url), keyring, clock)
    await again.start()
    try:
        assert await again.store.schema_version() == 2
    finally:
        await again.close()


async def test_notes_and_addenda_round_trip(service: JournalService, alice: Principal) -> None:
    client_id, (first, second) = await _client_with_notes(service, alice)
    addendum = await service.add_addendum(alice, client_id, first, "Rettelse: det var tirsdag")
    journal = await service.read_journal(alice, client_id, "care")
    assert [n.id for n in journal.notes] == [first, second, addendum.id]
    assert journal.client.name == "Søren Ærø Ødegård"
    assert journal.client.contact == "søren@example.dk"
    assert journal.addenda_of(first) == (addendum,)
    assert addendum.corrects == first and addendum.is_addendum
    assert journal.notes[0].text == "Session 0: ængstelig, søvn bedre"


async def test_bad_input_is_refused_and_changes_nothing(
    service: JournalService, alice: Principal
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    with pytest.raises(InvalidEntry):
        await service.add_note(alice, client_id, "   ")
    with pytest.raises(InvalidEntry):
        await service.add_note(alice, client_id, "x" * 100_001)
    with pytest.raises(NoteNotFound):
        await service.add_addendum(alice, client_id, "note_doesnotexist", "fix")
    with pytest.raises(AnonymousClient):
        await service.create_client(alice, "Anonym", anonymous=True)
    with pytest.raises(JournalForbidden):
        await service.list_clients(Principal("cli_x", "client"))
    assert len((await service.read_journal(alice, client_id)).notes) == 1
    assert len(await service.list_clients(alice)) == 1


async def test_practitioners_see_only_their_own_clients(
    service: JournalService, alice: Principal, bob: Principal
) -> None:
    client_id, (note_id, _) = await _client_with_notes(service, alice)
    await service.create_client(bob, "Bobs klient")
    assert [c.name for c in await service.list_clients(bob)] == ["Bobs klient"]
    for attempt in (
        service.read_journal(bob, client_id),
        service.add_note(bob, client_id, "not mine"),
        service.add_addendum(bob, client_id, note_id, "not mine"),
        service.export_json(bob, client_id),
        service.export_pdf(bob, client_id),
        service.set_hold(bob, client_id, True, "complaint"),
    ):
        with pytest.raises(ClientNotFound):
            await attempt
    zipped = b"".join([chunk async for chunk in service.export_all(bob)])
    assert not any(client_id in name for name in read_zip(zipped))
    assert len((await service.read_journal(alice, client_id)).notes) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE notes SET author = 'mallory'",
        "UPDATE notes SET ciphertext = ciphertext",
        "DELETE FROM notes",
        "DELETE FROM client_keys",
        "DELETE FROM clients",
        "UPDATE clients SET name_ct = contact_ct",
        "UPDATE client_keys SET client_id = 'cli_other'",
        "DELETE FROM audit",
        "UPDATE audit SET actor = 'mallory'",
    ],
)
async def test_append_only_is_enforced_by_the_schema(
    service: JournalService, alice: Principal, raw: Any, sql: str
) -> None:
    client_id, _ = await _client_with_notes(service, alice)
    before = await raw.fetch("SELECT COUNT(*) FROM notes")
    with pytest.raises(Exception, match="append_only"):
        await raw.execute(sql)
    assert await raw.fetch("SELECT COUNT(*) FROM notes") == before
    assert len((await service.read_journal(alice, client_id)).notes) == 2
    assert (await service.verify_audit()).ok


async def test_truncate_is_refused_on_postgresql(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    if not raw.is_pg:
        pytest.skip("SQLite has no TRUNCATE")
    await _client_with_notes(service, alice)
    with pytest.raises(Exception, match="append_only"):
        await raw.execute("TRUNCATE notes CASCADE")


async def test_store_has_no_update_path_and_refuses_duplicates(
    service: JournalService, alice: Principal
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    store = service.store
    assert not any(hasattr(store, name) for name in ("update_note", "delete_note"))
    note = (await store.list_notes(client_id))[0]
    event = (await store.audit_page(0, 1))[0].event
    with pytest.raises(DuplicateRecord):
        await store.append_note(note, event)


async def test_hold_is_the_only_client_change(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, _ = await _client_with_notes(service, alice)
    await service.set_hold(alice, client_id, True, "klagesag")
    assert (await service.list_clients(alice))[0].hold is True
    with pytest.raises(Exception, match="append_only"):
        await raw.execute(f"UPDATE clients SET created_us = 0 WHERE id = '{client_id}'")


async def test_tampered_rows_raise_integrity_errors(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, (first, second) = await _client_with_notes(service, alice)
    await raw.drop_guards("notes")
    # Move note 2's ciphertext onto note 1 (a "row swap").
    cts = dict(await raw.fetch("SELECT id, ciphertext FROM notes"))
    await raw.execute(
        f"UPDATE notes SET ciphertext = {raw.blob(bytes(cts[second]))} WHERE id = '{first}'"
    )
    with pytest.raises(IntegrityError):
        await service.read_journal(alice, client_id)


async def test_metadata_and_key_version_tampering_detected(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, (first, _) = await _client_with_notes(service, alice)
    await raw.drop_guards("notes")
    await raw.execute(f"UPDATE notes SET created_us = created_us + 1 WHERE id = '{first}'")
    with pytest.raises(IntegrityError):
        await service.read_journal(alice, client_id)
    await raw.execute(f"UPDATE notes SET created_us = created_us - 1 WHERE id = '{first}'")
    await service.read_journal(alice, client_id)
    await raw.execute(f"UPDATE notes SET key_version = 2 WHERE id = '{first}'")
    with pytest.raises(IntegrityError):
        await service.read_journal(alice, client_id)


async def test_kek_version_downgrade_of_a_wrapped_key_is_detected(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, _ = await _client_with_notes(service, alice)
    await service.rotate_keys()
    await raw.execute("UPDATE client_keys SET kek_version = 1")
    with pytest.raises(IntegrityError):
        await service.read_journal(alice, client_id)


async def test_key_rotation_rewraps_only_and_everything_stays_readable(
    service: JournalService,
    alice: Principal,
    raw: Any,
    keyring: FileKeyring,
    store_url: str,
    clock: FakeClock,
) -> None:
    client_id, _ = await _client_with_notes(service, alice)
    notes_before = await raw.fetch("SELECT id, ciphertext FROM notes ORDER BY id")
    report = await service.rotate_keys()
    assert (report.kek_version, report.rewrapped) == (2, 1)
    assert await raw.fetch("SELECT id, ciphertext FROM notes ORDER BY id") == notes_before
    assert await raw.fetch("SELECT DISTINCT kek_version FROM client_keys") == [(2,)]
    reopened = JournalService(open_store(store_url), FileKeyring.open(keyring.path), clock)
    await reopened.start()
    try:
        assert len((await reopened.read_journal(alice, client_id)).notes) == 2
        assert (await reopened.verify_audit()).ok
    finally:
        await reopened.close()


async def test_export_json_round_trip_into_a_fresh_store(
    service: JournalService, alice: Principal, tmp_path: Any, clock: FakeClock
) -> None:
    client_id, (first, _) = await _client_with_notes(service, alice)
    await service.add_addendum(alice, client_id, first, "Tilføjelse")
    original = await service.read_journal(alice, client_id)
    data = await service.export_json(alice, client_id)
    doc = json.loads(data)
    assert (doc["format"], doc["version"]) == ("fortrolig.journal", 1)
    target = JournalService(
        open_store(str(tmp_path / "other.db")), FileKeyring.open(tmp_path / "k2"), clock
    )
    await target.start()
    try:
        await target.import_json(alice, data)
        assert await target.read_journal(alice, client_id) == original
        with pytest.raises(DuplicateRecord):
            await target.import_json(alice, data)
    finally:
        await target.close()


async def test_pdf_and_zip_exports(service: JournalService, alice: Principal) -> None:
    one, _ = await _client_with_notes(service, alice)
    two, _ = await _client_with_notes(service, alice, name="Åse Æbelø", notes=1)
    pdf = await service.export_pdf(alice, one)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    zipped = b"".join([chunk async for chunk in service.export_all(alice)])
    files = read_zip(zipped)
    assert sorted(files) == sorted([f"{one}.json", f"{one}.pdf", f"{two}.json", f"{two}.pdf"])
    assert json.loads(files[f"{two}.json"])["client"]["name"] == "Åse Æbelø"


async def test_retention_erases_exactly_the_due_journals(
    service: JournalService, alice: Principal, bob: Principal, clock: FakeClock, raw: Any
) -> None:
    old, _ = await _client_with_notes(service, alice, name="Gammel")
    held, _ = await _client_with_notes(service, bob, name="Klagesag")
    await service.set_hold(bob, held, True, "open complaint")
    clock.advance(4 * YEAR)
    recent, _ = await _client_with_notes(service, alice, name="Aktiv")
    revived, _ = await _client_with_notes(service, bob, name="Genoptaget", notes=0)
    clock.advance(1.5 * YEAR)  # old: 5.5 years since last note; recent: 1.5 years
    dry = await service.retention(dry_run=True)
    assert [c.client_id for c in dry.due] == [old] and dry.erased == 0
    assert len(await service.list_clients(alice)) == 2
    real = await service.retention(dry_run=False)
    assert real.erased == 1
    assert [c.id for c in await service.list_clients(alice)] == [recent]
    assert {c.id for c in await service.list_clients(bob)} == {held, revived}
    for table, column in (("notes", "client_id"), ("client_keys", "client_id"), ("clients", "id")):
        assert await raw.fetch(f"SELECT COUNT(*) FROM {table} WHERE {column} = '{old}'") == [(0,)]
    assert await raw.fetch("SELECT client_id FROM erasures") == [(old,)]
    with pytest.raises(ClientNotFound):
        await service.read_journal(alice, old)
    assert (await service.retention(dry_run=False)).erased == 0
    assert (await service.verify_audit()).ok


async def test_every_access_is_audited(service: JournalService, alice: Principal) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    await service.read_journal(alice, client_id, "supervision")
    await service.export_json(alice, client_id)
    rows = await service.store.audit_page(0, 100)
    actions = [(r.event.action, r.event.client_id) for r in rows]
    assert actions == [
        ("client.create", client_id),
        ("note.append", client_id),
        ("journal.read", client_id),
        ("export.json", client_id),
    ]
    assert rows[2].event.purpose == "supervision" and rows[2].event.actor == alice.subject
    assert (await service.verify_audit()).ok


async def test_audit_verify_catches_an_edited_row(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=3)
    await service.read_journal(alice, client_id)
    await raw.drop_guards("audit")
    await raw.execute("UPDATE audit SET purpose = 'innocent' WHERE seq = 3")
    report = await service.verify_audit()
    assert (report.ok, report.first_bad_seq, report.checked) == (False, 3, 2)
    assert "changed" in report.problem


async def test_audit_verify_catches_a_deleted_row(
    service: JournalService, alice: Principal, raw: Any
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=3)
    await service.read_journal(alice, client_id)
    await raw.drop_guards("audit")
    await raw.execute("DELETE FROM audit WHERE seq = 2")
    report = await service.verify_audit()
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "missing" in report.problem


async def test_append_only_violation_maps_to_typed_error(
    service: JournalService, alice: Principal
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    event = (await service.store.audit_page(0, 1))[0].event
    # erase_client is the only delete path; the triggers let it through only as a whole.
    assert await service.store.erase_client(client_id, event) is True
    assert await service.store.erase_client(client_id, event) is False
    assert isinstance(AppendOnlyViolation("x"), Exception)


async def test_audit_purposes_come_from_a_fixed_list(
    service: JournalService, alice: Principal
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    before = len(await service.store.audit_page(0, 1000))
    for bad in ("reading her notes on the divorce", "", "Care", "treatment"):
        with pytest.raises(InvalidPurpose):
            await service.read_journal(alice, client_id, bad)
        with pytest.raises(InvalidPurpose):
            await service.hold_history(alice, client_id, bad)
    assert len(await service.store.audit_page(0, 1000)) == before  # refused: nothing recorded
    await service.read_journal(alice, client_id, "complaint")
    purposes = [r.event.purpose for r in await service.store.audit_page(0, 1000)]
    assert purposes == ["administration", "record", "complaint"]


async def test_a_hold_reason_is_sealed_and_erased_with_the_client(
    service: JournalService, alice: Principal, clock: FakeClock, raw: Any
) -> None:
    reason = "Klagesag fra Åse om samtalen 3. marts"
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    await service.set_hold(alice, client_id, True, reason)
    await service.set_hold(alice, client_id, False)
    history = await service.hold_history(alice, client_id, "legal_request")
    assert [(c.hold, c.reason) for c in history] == [(True, reason), (False, None)]
    rows = await raw.fetch("SELECT action, purpose, detail FROM audit ORDER BY seq")
    assert ("hold.set", "legal_hold") in [(a, p) for a, p, _ in rows]
    assert ("hold.read", "legal_request") in [(a, p) for a, p, _ in rows]
    assert not [d for *_, d in rows if "Åse" in d or "Klagesag" in d]  # never plaintext
    # Retention erases the client: the sealed reason stays in the chain, unreadable.
    clock.advance(6 * YEAR)
    assert (await service.retention(dry_run=False)).erased == 1
    with pytest.raises(ClientNotFound):
        await service.hold_history(alice, client_id)
    details = [d for a, _, d in await raw.fetch("SELECT action, purpose, detail FROM audit")]
    assert any('"reason"' in d for d in details)
    assert (await service.verify_audit()).ok


async def test_a_moved_hold_reason_fails_to_open(
    service: JournalService, alice: Principal, clock: FakeClock, raw: Any
) -> None:
    client_id, _ = await _client_with_notes(service, alice, notes=1)
    await service.set_hold(alice, client_id, True, "første grund")
    clock.advance(1)
    await service.set_hold(alice, client_id, True, "anden grund")
    rows = await raw.fetch("SELECT seq, detail FROM audit WHERE action = 'hold.set' ORDER BY seq")
    (first_seq, _), (_, second_detail) = rows
    await raw.drop_guards("audit")
    quoted = second_detail.replace("'", "''")
    await raw.execute(f"UPDATE audit SET detail = '{quoted}' WHERE seq = {first_seq}")
    with pytest.raises(IntegrityError):
        await service.hold_history(alice, client_id)
    assert not (await service.verify_audit()).ok

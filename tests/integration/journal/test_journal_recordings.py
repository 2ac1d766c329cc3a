"""Recordings in the journal on real SQLite and PostgreSQL: storage, playback, export, erasure.

The files here are made with the recorder's own streaming AEAD (``stream_aead.encrypt``) under
the key the journal hands out, exactly as the recorder writes them; the browser-to-file path is
tested end to end in tests/e2e/test_recording_browser.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fortrolig.core.clock import FakeClock
from fortrolig.core.ids import new_id
from fortrolig.core.principal import Principal
from fortrolig.journal import audit
from fortrolig.journal.errors import (
    ClientNotFound,
    JournalForbidden,
    PlaybackTicketInvalid,
    RecordingNotFound,
)
from fortrolig.journal.export import read_zip
from fortrolig.journal.recording_service import TICKET_TTL_S
from fortrolig.journal.recordings_model import CHUNK_BYTES, RecordingPartInfo
from fortrolig.journal.service import JournalService
from fortrolig.recording.keys import file_associated_data
from fortrolig.recording.stream_aead import StreamIntegrityError, encrypt

PLAIN = os.urandom(CHUNK_BYTES * 2 + 12_345)  # three chunks, the last one short
WHO = ("Dr. Hansen", "Anna (MitID)")
RID, RID2, RID9, OTHER = (new_id("rec") for _ in range(4))


async def _recording(
    service: JournalService, who: Principal, tmp_path: Path, plain: bytes = PLAIN
) -> tuple[str, str, bytes]:
    """A client with one finished recording of one part; returns (client, recording, key)."""
    client = await service.create_client(who, "Anna Ærø", None)
    rec = service.recordings
    await rec.check_recordable(who.subject, client.id)
    await rec.audit_consent(who.subject, client.id, "request", RID, WHO[0])
    await rec.audit_consent(who.subject, client.id, "accept", RID, WHO[1])
    key = await rec.begin(who.subject, client.id, "room_1", RID, WHO)
    path = tmp_path / f"{RID}.0.webm.enc"
    path.write_bytes(encrypt(key, plain, file_associated_data(RID, 0)))
    info = RecordingPartInfo(0, 0.2, 20.0, 1200, 4)
    assert await rec.add_part(RID, info, path) is True
    assert await rec.add_part(RID, info, path) is False  # offered twice: stored once
    assert await rec.finish(RID, "stopped", WHO) is True
    assert await rec.finish(RID, "stopped", WHO) is False
    return client.id, RID, key


async def test_a_recording_is_listed_with_its_consent_and_parts(
    service: JournalService, alice: Principal, tmp_path: Path
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    (listed,) = await service.recordings.list_recordings(alice, client_id)
    assert (listed.id, listed.room_id, listed.state, listed.reason) == (
        rid,
        "room_1",
        "finished",
        "stopped",
    )
    assert listed.consented_by == WHO
    (part,) = listed.parts
    assert (part.index, part.size, part.frames, part.tracks) == (0, len(PLAIN), 1200, 4)
    assert listed.duration_s == pytest.approx(20.2)
    # Every step is in the hash chain, and the chain verifies.
    actions = [r.event.action for r in await service.store.audit_page(0, 100)]
    for action in (
        audit.RECORDING_REQUEST,
        audit.RECORDING_ACCEPT,
        audit.RECORDING_START,
        audit.RECORDING_PART,
        audit.RECORDING_STOP,
        audit.RECORDING_LIST,
    ):
        assert action in actions
    assert (await service.verify_audit()).ok
    # Who consented is the client's data: sealed in the audit detail, never in clear.
    details = " ".join(r.event.detail for r in await service.store.audit_page(0, 100))
    assert "Anna" not in details


async def test_playback_reads_exact_ranges_through_a_ticket(
    service: JournalService, alice: Principal, tmp_path: Path
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    ticket = await service.recordings.playback(alice, client_id, rid, 0)
    reader = await service.recordings.open_ticket(ticket.token)
    assert (reader.size, reader.practitioner_id) == (len(PLAIN), alice.subject)
    for offset, length in [(0, 100), (4_000, 200), (CHUNK_BYTES - 10, 30), (len(PLAIN) - 5, 99)]:
        assert await reader.read(offset, length) == PLAIN[offset : offset + length]
    assert b"".join([c async for c in reader.chunks()]) == PLAIN
    actions = [r.event.action for r in await service.store.audit_page(0, 100)]
    assert actions.count(audit.RECORDING_PLAY) == 1


async def test_tickets_cannot_be_forged_or_outlive_their_time(
    service: JournalService, alice: Principal, tmp_path: Path, clock: FakeClock
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    ticket = await service.recordings.playback(alice, client_id, rid, 0)
    flipped = ticket.token[:-3] + ("A" if ticket.token[-3] != "A" else "B") + ticket.token[-2:]
    for bad in (flipped, "", "not-a-ticket", ticket.token[:20]):
        with pytest.raises(PlaybackTicketInvalid):
            await service.recordings.open_ticket(bad)
    clock.advance(TICKET_TTL_S + 1)
    with pytest.raises(PlaybackTicketInvalid, match="expired"):
        await service.recordings.open_ticket(ticket.token)


async def test_only_the_owner_sees_or_plays_a_recording(
    service: JournalService, alice: Principal, bob: Principal, tmp_path: Path
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    with pytest.raises((ClientNotFound, JournalForbidden)):
        await service.recordings.list_recordings(bob, client_id)
    with pytest.raises((ClientNotFound, JournalForbidden)):
        await service.recordings.playback(bob, client_id, rid, 0)
    with pytest.raises((ClientNotFound, JournalForbidden)):
        await service.recordings.begin(bob.subject, client_id, "room_2", RID2, ())
    with pytest.raises(RecordingNotFound):
        await service.recordings.playback(alice, client_id, rid, 1)
    with pytest.raises(RecordingNotFound):
        await service.recordings.playback(alice, client_id, OTHER, 0)


async def test_a_damaged_file_is_refused_and_nothing_is_stored(
    service: JournalService, alice: Principal, tmp_path: Path
) -> None:
    client = await service.create_client(alice, "Anna", None)
    key = await service.recordings.begin(alice.subject, client.id, "room_1", RID9, WHO)
    data = bytearray(encrypt(key, PLAIN, file_associated_data(RID9, 0)))
    data[len(data) // 2] ^= 1
    path = tmp_path / f"{RID9}.0.webm.enc"
    path.write_bytes(bytes(data))
    with pytest.raises(StreamIntegrityError):
        await service.recordings.add_part(RID9, RecordingPartInfo(0, 0, 1, 1, 1), path)
    # Another recording's file (other associated data) does not pass either.
    path.write_bytes(encrypt(key, PLAIN, file_associated_data(OTHER, 0)))
    with pytest.raises(StreamIntegrityError):
        await service.recordings.add_part(RID9, RecordingPartInfo(0, 0, 1, 1, 1), path)
    (listed,) = await service.recordings.list_recordings(alice, client.id)
    assert listed.parts == () and listed.state == "recording"


@pytest.mark.parametrize("where", ["header", "middle", "last"])
async def test_a_flipped_stored_byte_refuses_playback(
    service: JournalService, alice: Principal, tmp_path: Path, raw: Any, where: str
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    await raw.drop_guards("recording_chunks")
    seq = {"header": 0, "middle": 1, "last": 2}[where]
    ((data,),) = await raw.fetch(f"SELECT data FROM recording_chunks WHERE seq = {seq}")
    data = bytearray(data)
    data[{"header": 5, "middle": 100_000, "last": len(data) - 1}[where]] ^= 0x80
    await raw.execute(
        f"UPDATE recording_chunks SET data = {raw.blob(bytes(data))} WHERE seq = {seq}"
    )
    with pytest.raises(StreamIntegrityError):
        await service.recordings.playback(alice, client_id, rid, 0)


async def test_recording_rows_are_append_only(
    service: JournalService, alice: Principal, tmp_path: Path, raw: Any
) -> None:
    await _recording(service, alice, tmp_path)
    for sql in (
        "UPDATE recordings SET room_id = 'x'",
        "DELETE FROM recordings",
        "UPDATE recording_chunks SET seq = seq + 10",
        "DELETE FROM recording_chunks",
        "DELETE FROM recording_parts",
        "UPDATE recording_ends SET reason = 'x'",
    ):
        with pytest.raises(Exception, match="append_only"):
            await raw.execute(sql)


async def test_erasure_shreds_recordings_with_the_journal(
    service: JournalService, alice: Principal, tmp_path: Path, raw: Any, clock: FakeClock
) -> None:
    client_id, rid, key = await _recording(service, alice, tmp_path)
    ticket = await service.recordings.playback(alice, client_id, rid, 0)
    issued_at = clock.now()
    clock.advance(6 * 365 * 86_400)  # past retention: the journal is crypto-shredded
    assert (await service.retention(dry_run=False)).erased == 1
    for table in ("recordings", "recording_ends", "recording_parts", "recording_chunks"):
        assert await raw.fetch(f"SELECT * FROM {table}") == []
    assert await service.store.get_keys(client_id) == []
    clock.set(issued_at)  # the ticket itself is still in time: the data is gone
    with pytest.raises((ClientNotFound, RecordingNotFound, JournalForbidden)):
        await service.recordings.open_ticket(ticket.token)
    assert key  # the key existed only in memory; nothing on disk or in the store can rebuild it


async def test_the_export_zip_holds_the_recordings(
    service: JournalService, alice: Principal, tmp_path: Path
) -> None:
    client_id, rid, _ = await _recording(service, alice, tmp_path)
    data = b"".join([piece async for piece in service.export_all(alice)])
    files = read_zip(data)
    assert files[f"{client_id}.recording.{rid}.0.webm"] == PLAIN
    assert f"{client_id}.recordings.json" in files
    assert b"Anna (MitID)" in files[f"{client_id}.recordings.json"]
    actions = [r.event.action for r in await service.store.audit_page(0, 200)]
    assert audit.RECORDING_EXPORT in actions

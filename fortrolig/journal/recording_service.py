"""Recordings as part of a client's journal: consent trail, keys, stored files, playback, export.

A recording's key is fresh and random, sealed by the client's journal data key
(:mod:`fortrolig.recording.keys`), so crypto-shredding the journal (erasure, retention) makes
every recording of the client unreadable, backups included, and erasure also deletes the rows.
Files arrive already encrypted (:mod:`fortrolig.recording.stream_aead`, written by the
recorder); a part is stored only after every segment of it has been authenticated, and it is
read back only through the same authentication.

Every step is an entry in the audit chain: each consent step (the participant's label sealed
under the client's key), the start, every stored part, the stop, every listing, every playback
(once, when its URL is issued) and every export. Playback URLs carry a sealed ticket (the caller,
the part and an expiry) because a ``<video>`` element cannot send the Bearer header; the ticket
key is derived from the audit key, so it is as secret as the chain and needs no key of its own.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fortrolig.core.aead import AssociatedData, open_sealed, seal
from fortrolig.core.clock import Clock
from fortrolig.core.principal import Principal
from fortrolig.journal import audit, rules
from fortrolig.journal.crypto import AuditTextContext, JournalCipher
from fortrolig.journal.errors import ClientNotFound, PlaybackTicketInvalid, RecordingNotFound
from fortrolig.journal.model import MICROS, AuditEvent, ClientRow, to_micros
from fortrolig.journal.recordings_model import (
    CHUNK_BYTES,
    Recording,
    RecordingEndRow,
    RecordingPart,
    RecordingPartInfo,
    RecordingPartRow,
    RecordingRow,
    StoredRecording,
)
from fortrolig.journal.store import JournalStore
from fortrolig.recording.keys import (
    file_associated_data,
    key_aad,
    new_recording_key,
    unwrap_recording_key,
    wrap_recording_key,
)
from fortrolig.recording.stream_aead import (
    FIRST_PLAIN_SEGMENT,
    PLAIN_SEGMENT,
    SEGMENT_BYTES,
    SegmentReader,
    ciphertext_span,
    plaintext_size,
)

TICKET_TTL_S = 4 * 3600
"""How long a playback URL works: long enough to watch a session with pauses."""
_TICKET_AAD = b"fortrolig-playback-ticket/1"
_VERIFY_BATCH = 16  # chunks (4 MiB) read and authenticated at a time
_CONSENT_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class PlaybackTicket:
    """A playback URL's secret part and when it expires."""

    token: str
    expires_us: int


class PartReader:
    """Authenticated random access to one stored part's plaintext (what playback serves)."""

    def __init__(
        self, store: JournalStore, part: RecordingPartRow, key: bytes, practitioner_id: str
    ) -> None:
        self._store = store
        self._part = part
        self._key = key
        self.size = plaintext_size(part.size)
        self.practitioner_id = practitioner_id
        """Whose journal this is: the subscription that must allow reading it."""

    async def read(self, offset: int, length: int) -> bytes:
        """Plaintext ``[offset, offset + length)`` clipped at the end; every segment it lies in
        is authenticated (``StreamIntegrityError`` otherwise)."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        start, stop = ciphertext_span(offset, end, self._part.size)
        reader = await self._reader(start // CHUNK_BYTES, (stop - 1) // CHUNK_BYTES)
        return await asyncio.to_thread(reader.read_range, offset, end - offset)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The whole plaintext in order, a batch of chunks at a time, every segment checked."""
        for first in range(0, self._part.chunks, _VERIFY_BATCH):
            last = min(self._part.chunks, first + _VERIFY_BATCH) - 1
            reader = await self._reader(first, last)
            lo = _plain_offset(first, self._part.size)
            hi = min(self.size, _plain_offset(last + 1, self._part.size))
            yield await asyncio.to_thread(reader.read_range, lo, hi - lo)

    async def verify(self) -> None:
        """Authenticate every segment (a flipped byte anywhere refuses playback)."""
        async for _ in self.chunks():
            pass

    async def _reader(self, first: int, last: int) -> SegmentReader:
        rid, idx = self._part.recording_id, self._part.index
        loaded = {}
        if first > 0:  # the header lives in chunk 0
            loaded[0] = (await self._store.read_recording_chunks(rid, idx, 0, 0))[0]
        for offset, data in enumerate(
            await self._store.read_recording_chunks(rid, idx, first, last)
        ):
            loaded[first + offset] = data
        raw = cast(BinaryIO, _ChunkFile(self._part.size, loaded))
        return SegmentReader(raw, self._key, file_associated_data(rid, idx))


def _plain_offset(chunk: int, total: int) -> int:
    """Plaintext offset where ciphertext chunk ``chunk`` begins (chunks hold whole segments)."""
    if chunk == 0:
        return 0
    segment = chunk * CHUNK_BYTES // SEGMENT_BYTES
    return min(plaintext_size(total), FIRST_PLAIN_SEGMENT + (segment - 1) * PLAIN_SEGMENT)


class _ChunkFile(io.RawIOBase):
    """A read-only, seekable view of a part's ciphertext of which some chunks are loaded."""

    def __init__(self, size: int, chunks: dict[int, bytes]) -> None:
        super().__init__()
        self._size = size
        self._chunks = chunks
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._size if size < 0 else min(self._size, self._pos + size)
        out = bytearray()
        while self._pos < end:
            index, within = divmod(self._pos, CHUNK_BYTES)
            chunk = self._chunks.get(index)
            if chunk is None:  # a store that lost a row, or a bug: never read past it
                raise OSError(f"chunk {index} not loaded")
            take = chunk[within : within + end - self._pos]
            if not take:
                break  # the stored chunk is shorter than announced: truncated
            out += take
            self._pos += len(take)
        return bytes(out)


class RecordingJournal:
    """Use cases of recordings on the journal's store, cipher and clock."""

    def __init__(self, store: JournalStore, cipher: JournalCipher, clock: Clock) -> None:
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self._tickets: AESGCM | None = None

    def use_audit_key(self, audit_key: bytes) -> None:
        """Derive the playback ticket key from the audit key (called at start-up)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_TICKET_AAD)
        self._tickets = AESGCM(hkdf.derive(audit_key))

    def _now(self) -> int:
        return to_micros(self._clock.now())

    # --- what signaling asks while a consultation runs ---------------------------------------

    async def check_recordable(self, owner: str, client_id: str) -> None:
        """Refuse unless ``client_id`` is a live journal of ``owner``."""
        await self._client(owner, client_id)

    async def audit_consent(
        self, owner: str, client_id: str, action: str, recording_id: str, who: str
    ) -> None:
        """Append a consent step (``request``/``accept``/``refuse``/``withdraw``) by ``who``."""
        name = audit.RECORDING_CONSENT_ACTIONS.get(action)
        if name is None:
            raise ValueError(f"unknown consent step {action!r}")
        rules.validate_id(recording_id, "recording id")
        await self._client(owner, client_id)
        await self._store.record(await self._event(owner, name, client_id, recording_id, who))

    async def begin(
        self,
        owner: str,
        client_id: str,
        room_id: str,
        recording_id: str,
        consented_by: tuple[str, ...],
    ) -> bytes:
        """Store a new recording (audited ``recording.start``) and return its file key."""
        rules.validate_id(recording_id, "recording id")
        await self._client(owner, client_id)
        version, dek = await self._latest_key(client_id)
        key = new_recording_key()
        row = RecordingRow(
            id=recording_id,
            client_id=client_id,
            practitioner_id=owner,
            room_id=room_id,
            started_us=self._now(),
            key_version=version,
            wrapped_key=wrap_recording_key(
                dek, key, key_aad(owner, client_id, recording_id, version)
            ),
            consent_ct=seal(
                dek,
                _names(consented_by),
                _consent_aad(owner, client_id, recording_id, "start", version),
            ),
        )
        event = AuditEvent(
            row.started_us,
            owner,
            audit.RECORDING_START,
            client_id,
            audit.PURPOSE_RECORD,
            recording_id,
        )
        await self._store.begin_recording(row, event)
        return key

    async def add_part(self, recording_id: str, info: RecordingPartInfo, path: Path) -> bool:
        """Authenticate the encrypted file ``path`` completely, then store it as part
        ``info.index`` (audited ``recording.part``). False when the part was stored before
        (recovery may offer a file twice); the file itself is left to the caller."""
        stored = await self._recording(recording_id)
        if any(p.index == info.index for p in stored.parts):
            return False
        key = await self._file_key(stored.row)
        size = await asyncio.to_thread(
            _verify_file, path, key, file_associated_data(recording_id, info.index)
        )
        chunks = -(-size // CHUNK_BYTES)
        now = self._now()
        row = stored.row
        part = RecordingPartRow(
            recording_id, row.client_id, info.index, round(info.starts_at_s * MICROS),
            round(info.duration_s * MICROS), info.frames, info.tracks, size, chunks, now,
        )  # fmt: skip
        detail = f"{recording_id}/{info.index}"
        event = AuditEvent(
            now,
            row.practitioner_id,
            audit.RECORDING_PART,
            row.client_id,
            audit.PURPOSE_RECORD,
            detail,
        )
        with path.open("rb") as file:
            await self._store.add_recording_part(part, _file_chunks(file), event)
        return True

    async def finish(self, recording_id: str, reason: str, consented_by: tuple[str, ...]) -> bool:
        """Record the end (audited ``recording.stop``); False if it had ended already."""
        row = (await self._recording(recording_id)).row
        try:
            dek = await self._data_key(row)
        except ClientNotFound:
            return False  # erased while it ran: nothing to finish
        aad = _consent_aad(row.practitioner_id, row.client_id, recording_id, "end", row.key_version)
        end = RecordingEndRow(
            recording_id, row.client_id, self._now(), reason, seal(dek, _names(consented_by), aad)
        )
        detail = json.dumps({"recording": recording_id, "reason": reason}, sort_keys=True)
        event = AuditEvent(
            end.ended_us,
            row.practitioner_id,
            audit.RECORDING_STOP,
            row.client_id,
            audit.PURPOSE_RECORD,
            detail,
        )
        return await self._store.end_recording(end, event)

    async def list_recordings(self, principal: Principal, client_id: str) -> list[Recording]:
        """The caller's client's recordings, opened (audited ``recording.list``)."""
        pid = rules.require_practitioner(principal)
        await self._client(pid, client_id)
        stored = await self._store.list_recordings(client_id)
        keys = self._cipher.keys_by_version(await self._store.get_keys(client_id), client_id)
        await self._store.record(
            AuditEvent(self._now(), pid, audit.RECORDING_LIST, client_id, audit.PURPOSE_CARE)
        )
        return [self._open(s, keys) for s in stored]

    async def playback(
        self, principal: Principal, client_id: str, recording_id: str, index: int
    ) -> PlaybackTicket:
        """A ticket for playing one part; the whole part is authenticated first and the
        playback is audited (``recording.play``)."""
        pid = rules.require_practitioner(principal)
        reader = await self._part_reader(pid, client_id, recording_id, index)
        await reader.verify()
        now = self._now()
        detail = f"{recording_id}/{index}"
        await self._store.record(
            AuditEvent(now, pid, audit.RECORDING_PLAY, client_id, audit.PURPOSE_CARE, detail)
        )
        expires = now + TICKET_TTL_S * MICROS
        doc = json.dumps([pid, client_id, recording_id, index, expires], separators=(",", ":"))
        nonce = os.urandom(12)
        sealed = self._ticket_key().encrypt(nonce, doc.encode(), _TICKET_AAD)
        token = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return PlaybackTicket(token, expires)

    async def open_ticket(self, token: str) -> PartReader:
        """The part a ticket names (``playback_ticket_invalid`` if forged or expired); its
        :attr:`PartReader.practitioner_id` is whose subscription the caller must check."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            doc = json.loads(self._ticket_key().decrypt(raw[:12], raw[12:], _TICKET_AAD))
            pid, client_id, recording_id, index, expires = doc
        except (ValueError, InvalidTag, TypeError):
            raise PlaybackTicketInvalid("this playback link is not valid") from None
        if self._now() >= expires:
            raise PlaybackTicketInvalid("this playback link has expired; open it again")
        return await self._part_reader(pid, client_id, recording_id, index)

    async def export_parts(self, pid: str, client_id: str) -> AsyncIterator[tuple[str, PartReader]]:
        """Every stored part of a client, for the journal export (each recording audited
        ``recording.export`` before its parts are read)."""
        for stored in await self._store.list_recordings(client_id):
            if not stored.parts:
                continue
            rid = stored.row.id
            await self._store.record(
                AuditEvent(
                    self._now(), pid, audit.RECORDING_EXPORT, client_id, audit.PURPOSE_EXPORT, rid
                )
            )
            key = await self._file_key(stored.row)
            for part in stored.parts:
                yield f"{rid}.{part.index}.webm", PartReader(self._store, part, key, pid)

    async def describe(self, client_id: str) -> list[Recording]:
        """The opened recordings of a client without auditing (the export audits itself)."""
        stored = await self._store.list_recordings(client_id)
        keys = self._cipher.keys_by_version(await self._store.get_keys(client_id), client_id)
        return [self._open(s, keys) for s in stored]

    # --- internals ---------------------------------------------------------------------------

    def _ticket_key(self) -> AESGCM:
        if self._tickets is None:
            raise RuntimeError("ticket key not set; call use_audit_key() at start-up")
        return self._tickets

    async def _client(self, owner: str, client_id: str) -> ClientRow:
        row = rules.require_owner(owner, await self._store.get_client(client_id), client_id)
        return row

    async def _latest_key(self, client_id: str) -> tuple[int, bytes]:
        rows = await self._store.get_keys(client_id)
        if not rows:
            raise ClientNotFound(f"no client {client_id!r} (erased)")
        keys = self._cipher.keys_by_version(rows, client_id)
        version = max(keys)
        return version, keys[version]

    async def _recording(self, recording_id: str) -> StoredRecording:
        stored = await self._store.get_recording(recording_id)
        if stored is None:
            raise RecordingNotFound(f"no recording {recording_id!r}")
        return stored

    async def _data_key(self, row: RecordingRow) -> bytes:
        """The client's data key version the recording was sealed under."""
        rows = await self._store.get_keys(row.client_id)
        if not rows:
            raise ClientNotFound(f"no client {row.client_id!r} (erased)")
        dek = self._cipher.keys_by_version(rows, row.client_id).get(row.key_version)
        if dek is None:
            raise ClientNotFound(f"no data key {row.key_version} of client {row.client_id!r}")
        return dek

    async def _file_key(self, row: RecordingRow) -> bytes:
        aad = key_aad(row.practitioner_id, row.client_id, row.id, row.key_version)
        return unwrap_recording_key(await self._data_key(row), row.wrapped_key, aad)

    async def _part_reader(
        self, pid: str, client_id: str, recording_id: str, index: int
    ) -> PartReader:
        await self._client(pid, client_id)
        stored = await self._store.get_recording(recording_id)
        if stored is None or stored.row.client_id != client_id:
            raise RecordingNotFound(f"no recording {recording_id!r} in this journal")
        part = next((p for p in stored.parts if p.index == index), None)
        if part is None:
            raise RecordingNotFound(f"recording {recording_id!r} has no part {index}")
        return PartReader(self._store, part, await self._file_key(stored.row), pid)

    async def _event(
        self, owner: str, action: str, client_id: str, recording_id: str, who: str
    ) -> AuditEvent:
        at_us = self._now()
        version, dek = await self._latest_key(client_id)
        entry = AuditTextContext(owner, client_id, action, at_us)
        sealed = self._cipher.seal_audit_text(dek, version, entry, who)
        detail = json.dumps(
            {"recording": recording_id, "who": sealed}, sort_keys=True, separators=(",", ":")
        )
        return AuditEvent(at_us, owner, action, client_id, audit.PURPOSE_RECORD, detail)

    def _open(self, stored: StoredRecording, keys: dict[int, bytes]) -> Recording:
        row, end = stored.row, stored.end
        # Who had consented when it ended (everyone who accepted, late joiners included), else
        # who consented when it started; both sealed under the recording's data key version.
        which, blob = ("start", row.consent_ct) if end is None else ("end", end.consent_ct)
        aad = _consent_aad(row.practitioner_id, row.client_id, row.id, which, row.key_version)
        names = _open_names(keys, row.key_version, blob, aad)
        parts = tuple(
            RecordingPart(
                p.index,
                p.starts_at_us / MICROS,
                p.duration_us / MICROS,
                p.frames,
                p.tracks,
                plaintext_size(p.size),
            )
            for p in stored.parts
        )
        return Recording(
            id=row.id,
            client_id=row.client_id,
            room_id=row.room_id,
            started_us=row.started_us,
            ended_us=None if end is None else end.ended_us,
            reason=None if end is None else end.reason,
            consented_by=names,
            parts=parts,
        )


def _names(names: tuple[str, ...]) -> bytes:
    return json.dumps([str(n) for n in names], ensure_ascii=False).encode("utf-8")


def _open_names(
    keys: dict[int, bytes], version: int, blob: bytes, aad: AssociatedData
) -> tuple[str, ...]:
    dek = keys.get(version)
    if dek is None:
        raise ClientNotFound("the data key of this recording is gone")
    return tuple(json.loads(open_sealed(dek, blob, aad)))


def _consent_aad(
    owner: str, client_id: str, recording_id: str, which: str, key_version: int
) -> AssociatedData:
    return AssociatedData(
        tenant=owner,
        client=client_id,
        record=recording_id,
        field=f"recording.consent.{which}",
        version=1,
        key_version=key_version,
        schema_version=_CONSENT_SCHEMA,
    )


def _verify_file(path: Path, key: bytes, associated_data: bytes) -> int:
    """Authenticate every segment of an encrypted file; returns its size."""
    with path.open("rb") as file:
        reader = SegmentReader(file, key, associated_data)
        for index in range(reader.segments):
            reader.segment(index)
        return file.seek(0, io.SEEK_END)


def _file_chunks(file: BinaryIO) -> Iterator[bytes]:
    while data := file.read(CHUNK_BYTES):
        yield data

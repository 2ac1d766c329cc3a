"""The recording tables of the SQLite journal store (a mixin of
:class:`~fortrolig.journal.store_sqlite.SqliteJournalStore`).

Ciphertext goes in as 256 KiB chunk rows in the same transaction as its part row; the chunks
are read from an iterator inside the store's worker thread, so a long recording is never held in
memory whole and the event loop never waits on the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from fortrolig.journal.model import ERASED_WITH_CLIENT, AuditEvent, AuditRow
from fortrolig.journal.recordings_model import (
    RecordingEndRow,
    RecordingPartRow,
    RecordingRow,
    StoredRecording,
)

T = TypeVar("T")

_REC_COLS = (
    "id, client_id, practitioner_id, room_id, started_us, key_version, wrapped_key, consent_ct"
)
_END_COLS = "recording_id, client_id, ended_us, reason, consent_ct"
_PART_COLS = (
    "recording_id, client_id, idx, starts_at_us, duration_us, frames, tracks, size, chunks, "
    "added_us"
)


def migration(trigger: Callable[..., str], shredded: str) -> list[str]:
    """Migration 2: the recording tables and their append-only triggers."""
    tables = {
        "recordings": """CREATE TABLE recordings (
            id TEXT PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients (id),
            practitioner_id TEXT NOT NULL, room_id TEXT NOT NULL, started_us INTEGER NOT NULL,
            key_version INTEGER NOT NULL, wrapped_key BLOB NOT NULL, consent_ct BLOB NOT NULL)""",
        "recording_ends": """CREATE TABLE recording_ends (
            recording_id TEXT PRIMARY KEY REFERENCES recordings (id),
            client_id TEXT NOT NULL, ended_us INTEGER NOT NULL, reason TEXT NOT NULL,
            consent_ct BLOB NOT NULL)""",
        "recording_parts": """CREATE TABLE recording_parts (
            recording_id TEXT NOT NULL REFERENCES recordings (id), client_id TEXT NOT NULL,
            idx INTEGER NOT NULL, starts_at_us INTEGER NOT NULL, duration_us INTEGER NOT NULL,
            frames INTEGER NOT NULL, tracks INTEGER NOT NULL, size INTEGER NOT NULL,
            chunks INTEGER NOT NULL, added_us INTEGER NOT NULL, PRIMARY KEY (recording_id, idx))""",
        "recording_chunks": """CREATE TABLE recording_chunks (
            recording_id TEXT NOT NULL, client_id TEXT NOT NULL, part INTEGER NOT NULL,
            seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (recording_id, part, seq),
            FOREIGN KEY (recording_id, part) REFERENCES recording_parts (recording_id, idx))""",
    }
    statements = [*tables.values(), "CREATE INDEX recordings_by_client ON recordings (client_id)"]
    for table in tables:
        statements.append(
            trigger(f"{table}_no_update", f"BEFORE UPDATE ON {table}", f"{table} are final")
        )
        statements.append(
            trigger(
                f"{table}_no_delete",
                f"BEFORE DELETE ON {table}",
                f"{table} are removed only by erasure",
                "NOT (" + shredded.format(col="client_id") + ")",
            )
        )
    return statements


def _recording(r: tuple[Any, ...]) -> RecordingRow:
    return RecordingRow(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]))


def _end(r: tuple[Any, ...]) -> RecordingEndRow:
    return RecordingEndRow(r[0], r[1], r[2], r[3], bytes(r[4]))


def _part(r: tuple[Any, ...]) -> RecordingPartRow:
    return RecordingPartRow(*r)


class SqliteRecordingRows:
    """Recording rows on the journal's SQLite file."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T: ...

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        def _append_audit(self, c: sqlite3.Connection, event: AuditEvent) -> AuditRow: ...

    async def begin_recording(self, row: RecordingRow, audit: AuditEvent) -> None:
        """Insert a recording and its audit entry (``DuplicateRecord`` if the id exists)."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO recordings ({_REC_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.client_id,
                    row.practitioner_id,
                    row.room_id,
                    row.started_us,
                    row.key_version,
                    row.wrapped_key,
                    row.consent_ct,
                ),
            )
            self._append_audit(c, audit)

        await self._run(op)

    async def add_recording_part(
        self, part: RecordingPartRow, chunks: Iterator[bytes], audit: AuditEvent
    ) -> None:
        """Insert a part, its ciphertext chunks (exactly ``part.chunks`` of them) and its audit
        entry in one transaction (``DuplicateRecord`` if the part exists)."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO recording_parts ({_PART_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    part.recording_id,
                    part.client_id,
                    part.index,
                    part.starts_at_us,
                    part.duration_us,
                    part.frames,
                    part.tracks,
                    part.size,
                    part.chunks,
                    part.added_us,
                ),
            )
            count = 0
            for seq, data in enumerate(chunks):
                c.execute(
                    "INSERT INTO recording_chunks VALUES (?, ?, ?, ?, ?)",
                    (part.recording_id, part.client_id, part.index, seq, data),
                )
                count += 1
            if count != part.chunks:
                raise ValueError(f"part has {count} chunks, {part.chunks} announced")
            self._append_audit(c, audit)

        await self._run(op)

    async def end_recording(self, end: RecordingEndRow, audit: AuditEvent) -> bool:
        """Record the end (once: False if it had ended already) with its audit entry."""

        def op(c: sqlite3.Connection) -> bool:
            if c.execute(
                "SELECT 1 FROM recording_ends WHERE recording_id = ?", (end.recording_id,)
            ).fetchone():
                return False
            c.execute(
                f"INSERT INTO recording_ends ({_END_COLS}) VALUES (?, ?, ?, ?, ?)",
                (end.recording_id, end.client_id, end.ended_us, end.reason, end.consent_ct),
            )
            self._append_audit(c, audit)
            return True

        return await self._run(op)

    async def get_recording(self, recording_id: str) -> StoredRecording | None:
        """One recording with its end and parts, or None."""

        def op(c: sqlite3.Connection) -> StoredRecording | None:
            row = c.execute(
                f"SELECT {_REC_COLS} FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
            return None if row is None else _stored(c, _recording(row))

        return await self._read(op)

    async def list_recordings(self, client_id: str) -> list[StoredRecording]:
        """A client's recordings, oldest first."""

        def op(c: sqlite3.Connection) -> list[StoredRecording]:
            rows = c.execute(
                f"SELECT {_REC_COLS} FROM recordings WHERE client_id = ? ORDER BY started_us, id",
                (client_id,),
            ).fetchall()
            return [_stored(c, _recording(r)) for r in rows]

        return await self._read(op)

    async def read_recording_chunks(
        self, recording_id: str, part: int, first: int, last: int
    ) -> list[bytes]:
        """Chunks ``first..last`` (inclusive) of a part, in order."""
        sql = (
            "SELECT data FROM recording_chunks WHERE recording_id = ? AND part = ? "
            "AND seq BETWEEN ? AND ? ORDER BY seq"
        )
        args = (recording_id, part, first, last)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [bytes(r[0]) for r in rows]


def _stored(c: sqlite3.Connection, row: RecordingRow) -> StoredRecording:
    end = c.execute(
        f"SELECT {_END_COLS} FROM recording_ends WHERE recording_id = ?", (row.id,)
    ).fetchone()
    parts = c.execute(
        f"SELECT {_PART_COLS} FROM recording_parts WHERE recording_id = ? ORDER BY idx", (row.id,)
    ).fetchall()
    return StoredRecording(row, None if end is None else _end(end), tuple(_part(p) for p in parts))


def erase_rows(c: sqlite3.Connection, client_id: str) -> None:
    """Delete a shredded client's rows of every table erased with it (in order)."""
    present = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in ERASED_WITH_CLIENT:
        if table in present:  # a restored backup of an older schema lacks newer tables
            c.execute(f"DELETE FROM {table} WHERE client_id = ?", (client_id,))

"""The recording tables of the PostgreSQL journal store (a mixin of
:class:`~fortrolig.journal.store_pg.PostgresJournalStore`).

Ciphertext goes in as 256 KiB chunk rows in the same transaction as its part row. The chunks
come from an iterator over a file; each is read in a worker thread so the event loop never
waits on the disk, and only one chunk is in memory at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from fortrolig.journal.model import ERASED_WITH_CLIENT, AuditEvent, AuditRow
from fortrolig.journal.recordings_model import (
    RecordingEndRow,
    RecordingPartRow,
    RecordingRow,
    StoredRecording,
)

T = TypeVar("T")

_TABLES = {
    "recordings": """CREATE TABLE recordings (
        id TEXT PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients (id),
        practitioner_id TEXT NOT NULL, room_id TEXT NOT NULL, started_us BIGINT NOT NULL,
        key_version INTEGER NOT NULL, wrapped_key BYTEA NOT NULL, consent_ct BYTEA NOT NULL)""",
    "recording_ends": """CREATE TABLE recording_ends (
        recording_id TEXT PRIMARY KEY REFERENCES recordings (id), client_id TEXT NOT NULL,
        ended_us BIGINT NOT NULL, reason TEXT NOT NULL, consent_ct BYTEA NOT NULL)""",
    "recording_parts": """CREATE TABLE recording_parts (
        recording_id TEXT NOT NULL REFERENCES recordings (id), client_id TEXT NOT NULL,
        idx INTEGER NOT NULL, starts_at_us BIGINT NOT NULL, duration_us BIGINT NOT NULL,
        frames INTEGER NOT NULL, tracks INTEGER NOT NULL, size BIGINT NOT NULL,
        chunks INTEGER NOT NULL, added_us BIGINT NOT NULL, PRIMARY KEY (recording_id, idx))""",
    "recording_chunks": """CREATE TABLE recording_chunks (
        recording_id TEXT NOT NULL, client_id TEXT NOT NULL, part INTEGER NOT NULL,
        seq INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (recording_id, part, seq),
        FOREIGN KEY (recording_id, part) REFERENCES recording_parts (recording_id, idx))""",
}

_REC_COLS = (
    "id, client_id, practitioner_id, room_id, started_us, key_version, wrapped_key, consent_ct"
)
_END_COLS = "recording_id, client_id, ended_us, reason, consent_ct"
_PART_COLS = (
    "recording_id, client_id, idx, starts_at_us, duration_us, frames, tracks, size, chunks, "
    "added_us"
)


def migration(
    row_trigger: Callable[[str, str, str, str], str], truncate_trigger: Callable[[str], str]
) -> list[str]:
    """Migration 2: the recording tables, guarded like the notes (no update; delete only by a
    recorded erasure; no truncate). Chunks already stored in TOAST are compressed ciphertext:
    storing them EXTERNAL skips a useless compression attempt."""
    statements = [*_TABLES.values(), "CREATE INDEX recordings_by_client ON recordings (client_id)"]
    statements.append("ALTER TABLE recording_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
    for table in _TABLES:
        statements += [
            row_trigger(f"{table}_no_update", "UPDATE", table, "journal_refuse"),
            row_trigger(f"{table}_no_delete", "DELETE", table, "journal_guard_erasure"),
            truncate_trigger(table),
        ]
    return statements


def _recording(r: asyncpg.Record) -> RecordingRow:
    return RecordingRow(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]))


def _end(r: asyncpg.Record) -> RecordingEndRow:
    return RecordingEndRow(r[0], r[1], r[2], r[3], bytes(r[4]))


def _part(r: asyncpg.Record) -> RecordingPartRow:
    return RecordingPartRow(*r)


class PgRecordingRows:
    """Recording rows on the journal's PostgreSQL database."""

    if TYPE_CHECKING:

        async def _tx(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T: ...

        async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

        async def _append_audit(self, c: asyncpg.Connection, event: AuditEvent) -> AuditRow: ...

    async def begin_recording(self, row: RecordingRow, audit: AuditEvent) -> None:
        """Insert a recording and its audit entry (``DuplicateRecord`` if the id exists)."""

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(
                f"INSERT INTO recordings ({_REC_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                row.id, row.client_id, row.practitioner_id, row.room_id, row.started_us,
                row.key_version, row.wrapped_key, row.consent_ct,
            )  # fmt: skip
            await self._append_audit(c, audit)

        await self._tx(op)

    async def add_recording_part(
        self, part: RecordingPartRow, chunks: Iterator[bytes], audit: AuditEvent
    ) -> None:
        """Insert a part, its ciphertext chunks (exactly ``part.chunks``) and its audit entry in
        one transaction (``DuplicateRecord`` if the part exists)."""

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(
                f"INSERT INTO recording_parts ({_PART_COLS}) VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                part.recording_id, part.client_id, part.index, part.starts_at_us,
                part.duration_us, part.frames, part.tracks, part.size, part.chunks, part.added_us,
            )  # fmt: skip
            seq = 0
            while (data := await asyncio.to_thread(next, chunks, None)) is not None:
                await c.execute(
                    "INSERT INTO recording_chunks VALUES ($1, $2, $3, $4, $5)",
                    part.recording_id, part.client_id, part.index, seq, data,
                )  # fmt: skip
                seq += 1
            if seq != part.chunks:
                raise ValueError(f"part has {seq} chunks, {part.chunks} announced")
            await self._append_audit(c, audit)

        await self._tx(op)

    async def end_recording(self, end: RecordingEndRow, audit: AuditEvent) -> bool:
        """Record the end (once: False if it had ended already) with its audit entry."""

        async def op(c: asyncpg.Connection) -> bool:
            done = await c.execute(
                f"INSERT INTO recording_ends ({_END_COLS}) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT DO NOTHING",
                end.recording_id, end.client_id, end.ended_us, end.reason, end.consent_ct,
            )  # fmt: skip
            if done != "INSERT 0 1":
                return False
            await self._append_audit(c, audit)
            return True

        return await self._tx(op)

    async def get_recording(self, recording_id: str) -> StoredRecording | None:
        """One recording with its end and parts, or None."""
        rows = await self._fetch(f"SELECT {_REC_COLS} FROM recordings WHERE id = $1", recording_id)
        return None if not rows else await self._stored(_recording(rows[0]))

    async def list_recordings(self, client_id: str) -> list[StoredRecording]:
        """A client's recordings, oldest first."""
        sql = f"SELECT {_REC_COLS} FROM recordings WHERE client_id = $1 ORDER BY started_us, id"
        return [await self._stored(_recording(r)) for r in await self._fetch(sql, client_id)]

    async def _stored(self, row: RecordingRow) -> StoredRecording:
        ends = await self._fetch(
            f"SELECT {_END_COLS} FROM recording_ends WHERE recording_id = $1", row.id
        )
        parts = await self._fetch(
            f"SELECT {_PART_COLS} FROM recording_parts WHERE recording_id = $1 ORDER BY idx",
            row.id,
        )
        end = _end(ends[0]) if ends else None
        return StoredRecording(row, end, tuple(_part(p) for p in parts))

    async def read_recording_chunks(
        self, recording_id: str, part: int, first: int, last: int
    ) -> list[bytes]:
        """Chunks ``first..last`` (inclusive) of a part, in order."""
        sql = (
            "SELECT data FROM recording_chunks WHERE recording_id = $1 AND part = $2 "
            "AND seq BETWEEN $3 AND $4 ORDER BY seq"
        )
        return [bytes(r[0]) for r in await self._fetch(sql, recording_id, part, first, last)]


async def erase_rows(c: asyncpg.Connection, client_id: str) -> None:
    """Delete a shredded client's rows of every table erased with it (in order)."""
    for table in ERASED_WITH_CLIENT:
        await c.execute(f"DELETE FROM {table} WHERE client_id = $1", client_id)

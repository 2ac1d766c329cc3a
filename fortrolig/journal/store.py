"""The journal store interface, implemented by SQLite and PostgreSQL, chosen by URL at start-up.

Stores keep opaque sealed rows; they never see a key or plaintext. They are append-only: there is
no update or delete method for notes or audit entries, and the schema refuses such statements too
(triggers), so even raw SQL cannot edit a note. The only ways rows leave are :meth:`erase_client`
(after its data key has been shredded, in the same transaction) and nothing else.

Writes that must be audited take the :class:`AuditEvent` and append it to the hash chain in the
same transaction, so a note is never acknowledged without its audit entry, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from fortrolig.journal.model import (
    AuditEvent,
    AuditRow,
    ClientRow,
    KeyRow,
    NoteRow,
    RetentionCandidate,
)
from fortrolig.journal.recordings_model import (
    RecordingEndRow,
    RecordingPartRow,
    RecordingRow,
    StoredRecording,
)


class RecordingRows(Protocol):
    """Persistence of recordings: rows written once, ciphertext in chunks, removed only with
    their client's erasure (``erase_client``)."""

    async def begin_recording(self, row: RecordingRow, audit: AuditEvent) -> None:
        """Insert a recording and its audit entry; :class:`DuplicateRecord` if the id exists."""
        ...

    async def add_recording_part(
        self, part: RecordingPartRow, chunks: Iterator[bytes], audit: AuditEvent
    ) -> None:
        """Insert a part with exactly ``part.chunks`` ciphertext chunks and its audit entry, in
        one transaction; :class:`DuplicateRecord` if the part exists."""
        ...

    async def end_recording(self, end: RecordingEndRow, audit: AuditEvent) -> bool:
        """Record how a recording ended (audited); False if it had ended already."""
        ...

    async def get_recording(self, recording_id: str) -> StoredRecording | None:
        """One recording with its end and parts."""
        ...

    async def list_recordings(self, client_id: str) -> list[StoredRecording]:
        """A client's recordings, oldest first."""
        ...

    async def read_recording_chunks(
        self, recording_id: str, part: int, first: int, last: int
    ) -> list[bytes]:
        """Ciphertext chunks ``first..last`` (inclusive) of one part, in order."""
        ...


class JournalStore(RecordingRows, Protocol):
    """Persistence of clients, wrapped data keys, notes, erasures and the audit chain."""

    @property
    def url(self) -> str:
        """Where the store lives (credentials removed)."""
        ...

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def schema_version(self) -> int:
        """The newest applied migration."""
        ...

    def use_audit_key(self, key: bytes) -> None:
        """Set the HMAC key for the audit chain (unwrapped from the meta table at start-up)."""
        ...

    async def get_meta(self, name: str) -> bytes | None:
        """A value of the meta table."""
        ...

    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Insert ``value`` unless present; return the stored value (first writer wins)."""
        ...

    async def replace_meta(self, name: str, old: bytes, new: bytes) -> bool:
        """Compare-and-set a meta value; False if it was not ``old``."""
        ...

    async def create_client(self, client: ClientRow, key: KeyRow, audit: AuditEvent) -> None:
        """Insert a client with its first data key; :class:`DuplicateRecord` if the id exists."""
        ...

    async def get_client(self, client_id: str) -> ClientRow | None:
        """One client row, or None."""
        ...

    async def list_clients(self, practitioner_id: str) -> list[ClientRow]:
        """A practitioner's clients, oldest first."""
        ...

    async def get_keys(self, client_id: str) -> list[KeyRow]:
        """Every wrapped data key version of a client (empty once erased)."""
        ...

    async def all_keys(self) -> list[KeyRow]:
        """Every wrapped data key (for KEK rotation)."""
        ...

    async def rewrap_key(self, old: KeyRow, new: KeyRow) -> bool:
        """Replace a wrap if it is still ``old`` (compare-and-set); the DEK itself is unchanged."""
        ...

    async def append_note(self, note: NoteRow, audit: AuditEvent) -> None:
        """Append a note; :class:`DuplicateRecord` if its id exists."""
        ...

    async def list_notes(self, client_id: str) -> list[NoteRow]:
        """A client's notes in the order they were written."""
        ...

    async def set_hold(self, client_id: str, hold: bool, audit: AuditEvent) -> None:
        """Set or clear the retention hold (open complaint case)."""
        ...

    async def retention_candidates(self) -> list[RetentionCandidate]:
        """Every client with its latest note time and hold flag."""
        ...

    async def erase_client(self, client_id: str, audit: AuditEvent) -> bool:
        """Crypto-shred: record the erasure, delete the data keys, then notes, recordings and
        client.

        Returns False when the client does not exist (already erased).
        """
        ...

    async def record(self, audit: AuditEvent) -> AuditRow:
        """Append a standalone audit entry (reads, exports)."""
        ...

    async def audit_page(self, after_seq: int, limit: int) -> list[AuditRow]:
        """Audit rows with ``seq > after_seq`` in order, at most ``limit``."""
        ...


def open_store(url: str) -> JournalStore:
    """Choose the implementation by URL: ``postgresql://…`` (or ``postgres://``) vs SQLite.

    SQLite accepts ``sqlite:///abs/path.db``, ``sqlite://rel/path.db`` or a plain path. The
    returned store is not opened yet: call ``await store.open()``.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from fortrolig.journal.store_pg import PostgresJournalStore

        return PostgresJournalStore(url)
    from fortrolig.journal.store_sqlite import SqliteJournalStore

    return SqliteJournalStore(sqlite_path(url))


def sqlite_path(url: str) -> Path:
    """The file path of a SQLite URL or plain path."""
    if not url.startswith("sqlite://"):
        return Path(url)
    rest = url.removeprefix("sqlite://")
    # sqlite:///abs/file.db is absolute (empty host); SQLAlchemy-style sqlite:////abs too.
    return Path(rest[1:] if rest.startswith("//") else rest)

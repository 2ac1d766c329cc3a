"""SQLite journal store: the embedded default (one file in the data directory).

WAL journal mode with ``synchronous=FULL``: a transaction is on disk when COMMIT returns, so an
acknowledged note survives a crash of the process or the machine. sqlite3 calls block, so each
operation runs as one short transaction in a worker thread, serialised by an asyncio lock (one
connection; SQLite has one writer anyway).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fortrolig.journal.audit import next_link
from fortrolig.journal.errors import AppendOnlyViolation, DuplicateRecord
from fortrolig.journal.model import (
    AuditEvent,
    AuditRow,
    ClientRow,
    KeyRow,
    NoteRow,
    RetentionCandidate,
)
from fortrolig.journal.recordings_sqlite import SqliteRecordingRows, erase_rows, migration
from fortrolig.storage.sqlite_file import SqliteFile

T = TypeVar("T")

_GUARD = "SELECT RAISE(ABORT, 'append_only: {what}')"
# Rows may be deleted only for a journal whose erasure is recorded and whose keys are gone.
_SHREDDED = (
    "EXISTS (SELECT 1 FROM erasures e WHERE e.client_id = OLD.{col}) "
    "AND NOT EXISTS (SELECT 1 FROM client_keys k WHERE k.client_id = OLD.{col})"
)


def _trigger(name: str, event: str, what: str, when: str | None = None) -> str:
    condition = f" WHEN {when}" if when else ""
    body = _GUARD.format(what=what)
    return f"CREATE TRIGGER {name} {event} FOR EACH ROW{condition} BEGIN {body}; END"


MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
            """CREATE TABLE clients (
                id TEXT PRIMARY KEY, practitioner_id TEXT NOT NULL, created_us INTEGER NOT NULL,
                key_version INTEGER NOT NULL, schema_version INTEGER NOT NULL,
                name_ct BLOB NOT NULL, contact_ct BLOB, hold INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX clients_by_practitioner ON clients (practitioner_id, created_us)",
            """CREATE TABLE client_keys (
                client_id TEXT NOT NULL REFERENCES clients (id), key_version INTEGER NOT NULL,
                kek_id TEXT NOT NULL, kek_version INTEGER NOT NULL, wrapped BLOB NOT NULL,
                PRIMARY KEY (client_id, key_version))""",
            """CREATE TABLE notes (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                client_id TEXT NOT NULL REFERENCES clients (id), practitioner_id TEXT NOT NULL,
                author TEXT NOT NULL, created_us INTEGER NOT NULL, consultation_id TEXT,
                corrects TEXT REFERENCES notes (id), key_version INTEGER NOT NULL,
                schema_version INTEGER NOT NULL, ciphertext BLOB NOT NULL)""",
            "CREATE INDEX notes_by_client ON notes (client_id, seq)",
            """CREATE TABLE erasures (
                client_id TEXT PRIMARY KEY, practitioner_id TEXT NOT NULL,
                erased_us INTEGER NOT NULL)""",
            """CREATE TABLE audit (
                seq INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, actor TEXT NOT NULL,
                action TEXT NOT NULL, client_id TEXT, purpose TEXT NOT NULL, detail TEXT NOT NULL,
                prev_hash BLOB NOT NULL, hash BLOB NOT NULL)""",
            _trigger("notes_no_update", "BEFORE UPDATE ON notes", "notes cannot be changed"),
            _trigger(
                "notes_no_delete",
                "BEFORE DELETE ON notes",
                "notes are removed only by erasure",
                "NOT (" + _SHREDDED.format(col="client_id") + ")",
            ),
            _trigger(
                "clients_no_update",
                "BEFORE UPDATE OF id, practitioner_id, created_us, key_version, schema_version, "
                "name_ct, contact_ct ON clients",
                "clients cannot be changed (only their hold flag)",
            ),
            _trigger(
                "clients_no_delete",
                "BEFORE DELETE ON clients",
                "clients are removed only by erasure",
                "NOT (" + _SHREDDED.format(col="id") + ")",
            ),
            _trigger(
                "keys_no_move",
                "BEFORE UPDATE OF client_id, key_version ON client_keys",
                "a data key cannot move to another client or version",
            ),
            _trigger(
                "keys_no_delete",
                "BEFORE DELETE ON client_keys",
                "data keys are destroyed only by a recorded erasure",
                "NOT EXISTS (SELECT 1 FROM erasures e WHERE e.client_id = OLD.client_id)",
            ),
            _trigger("erasures_no_update", "BEFORE UPDATE ON erasures", "erasures are final"),
            _trigger("erasures_no_delete", "BEFORE DELETE ON erasures", "erasures are final"),
            _trigger("audit_no_update", "BEFORE UPDATE ON audit", "audit entries are final"),
            _trigger("audit_no_delete", "BEFORE DELETE ON audit", "audit entries are final"),
        ],
    ),
    (2, migration(_trigger, _SHREDDED)),
]


def _audit_row(r: sqlite3.Row | tuple[Any, ...]) -> AuditRow:
    event = AuditEvent(r[1], r[2], r[3], r[4], r[5], r[6])
    return AuditRow(r[0], event, bytes(r[7]), bytes(r[8]))


_CLIENT_COLS = (
    "id, practitioner_id, created_us, key_version, schema_version, name_ct, contact_ct, hold"
)
_NOTE_COLS = (
    "id, client_id, practitioner_id, author, created_us, consultation_id, corrects, "
    "key_version, schema_version, ciphertext"
)


def _client(r: tuple[Any, ...]) -> ClientRow:
    return ClientRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), _blob(r[6]), bool(r[7]))


def _note(r: tuple[Any, ...]) -> NoteRow:
    return NoteRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]))


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class SqliteJournalStore(SqliteRecordingRows):
    """:class:`~fortrolig.journal.store.JournalStore` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        # secure_delete: an erased journal's ciphertext does not linger in freed pages.
        self._file = SqliteFile(path, pragmas=("foreign_keys=ON", "secure_delete=ON"))
        self._audit_key: bytes | None = None

    @property
    def url(self) -> str:
        """``sqlite:///abs/path.db`` or ``sqlite://rel/path.db``, as :func:`open_store` reads it."""
        return self._file.url

    @property
    def path(self) -> Path:
        """The database file."""
        return self._file.path

    def use_audit_key(self, key: bytes) -> None:
        """Set the audit chain HMAC key."""
        self._audit_key = key

    async def open(self) -> None:
        """Open the file (creating it mode 0600) and migrate."""
        await self._file.open(_translating(self._migrate))

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._file.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        # IMMEDIATE (SqliteFile's write transactions) takes the write lock up front, so the
        # audit chain's "read last, insert next" cannot interleave with another process.
        return await self._file.run(_translating(fn), write=write)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(fn, write=False)

    # --- schema ------------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL)"
        )
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?)", (version, time.time_ns() // 1000)
                )

    async def schema_version(self) -> int:
        """The newest applied migration."""
        row = await self._read(
            lambda c: c.execute("SELECT MAX(version) FROM schema_version").fetchone()
        )
        return int(row[0])

    # --- meta --------------------------------------------------------------------------------

    async def get_meta(self, name: str) -> bytes | None:
        """A meta value."""
        row = await self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Insert unless present; return the stored value."""

        def op(c: sqlite3.Connection) -> bytes:
            c.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))
            return bytes(c.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0])

        return await self._run(op)

    async def replace_meta(self, name: str, old: bytes, new: bytes) -> bool:
        """Compare-and-set a meta value."""
        sql = "UPDATE meta SET value = ? WHERE name = ? AND value = ?"
        return await self._run(lambda c: c.execute(sql, (new, name, old)).rowcount == 1)

    # --- clients and keys --------------------------------------------------------------------

    async def create_client(self, client: ClientRow, key: KeyRow, audit: AuditEvent) -> None:
        """Insert a client, its data key and the audit entry in one transaction."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO clients ({_CLIENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    client.id,
                    client.practitioner_id,
                    client.created_us,
                    client.key_version,
                    client.schema_version,
                    client.name_ct,
                    client.contact_ct,
                    int(client.hold),
                ),
            )
            c.execute(
                "INSERT INTO client_keys VALUES (?, ?, ?, ?, ?)",
                (key.client_id, key.key_version, key.kek_id, key.kek_version, key.wrapped),
            )
            self._append_audit(c, audit)

        await self._run(op)

    async def get_client(self, client_id: str) -> ClientRow | None:
        """One client row."""
        sql = f"SELECT {_CLIENT_COLS} FROM clients WHERE id = ?"
        row = await self._read(lambda c: c.execute(sql, (client_id,)).fetchone())
        return None if row is None else _client(row)

    async def list_clients(self, practitioner_id: str) -> list[ClientRow]:
        """A practitioner's clients, oldest first."""
        sql = (
            f"SELECT {_CLIENT_COLS} FROM clients WHERE practitioner_id = ? ORDER BY created_us, id"
        )
        rows = await self._read(lambda c: c.execute(sql, (practitioner_id,)).fetchall())
        return [_client(r) for r in rows]

    async def get_keys(self, client_id: str) -> list[KeyRow]:
        """A client's wrapped data keys."""
        sql = "SELECT * FROM client_keys WHERE client_id = ? ORDER BY key_version"
        rows = await self._read(lambda c: c.execute(sql, (client_id,)).fetchall())
        return [KeyRow(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def all_keys(self) -> list[KeyRow]:
        """Every wrapped data key."""
        sql = "SELECT * FROM client_keys ORDER BY client_id, key_version"
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return [KeyRow(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def rewrap_key(self, old: KeyRow, new: KeyRow) -> bool:
        """Compare-and-set one wrap."""
        sql = (
            "UPDATE client_keys SET kek_id = ?, kek_version = ?, wrapped = ? "
            "WHERE client_id = ? AND key_version = ? AND kek_id = ? AND kek_version = ? "
            "AND wrapped = ?"
        )
        args = (new.kek_id, new.kek_version, new.wrapped, old.client_id, old.key_version)
        args2 = (old.kek_id, old.kek_version, old.wrapped)
        return await self._run(lambda c: c.execute(sql, args + args2).rowcount == 1)

    async def set_hold(self, client_id: str, hold: bool, audit: AuditEvent) -> None:
        """Set or clear the retention hold."""

        def op(c: sqlite3.Connection) -> None:
            c.execute("UPDATE clients SET hold = ? WHERE id = ?", (int(hold), client_id))
            self._append_audit(c, audit)

        await self._run(op)

    # --- notes -------------------------------------------------------------------------------

    async def append_note(self, note: NoteRow, audit: AuditEvent) -> None:
        """Append a note and its audit entry in one transaction."""

        def op(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO notes ({_NOTE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    note.id,
                    note.client_id,
                    note.practitioner_id,
                    note.author,
                    note.created_us,
                    note.consultation_id,
                    note.corrects,
                    note.key_version,
                    note.schema_version,
                    note.ciphertext,
                ),
            )
            self._append_audit(c, audit)

        await self._run(op)

    async def list_notes(self, client_id: str) -> list[NoteRow]:
        """A client's notes in write order."""
        sql = f"SELECT {_NOTE_COLS} FROM notes WHERE client_id = ? ORDER BY seq"
        rows = await self._read(lambda c: c.execute(sql, (client_id,)).fetchall())
        return [_note(r) for r in rows]

    # --- retention ---------------------------------------------------------------------------

    async def retention_candidates(self) -> list[RetentionCandidate]:
        """Every client with its latest note time."""
        sql = (
            "SELECT c.id, c.practitioner_id, c.created_us, "
            "(SELECT MAX(n.created_us) FROM notes n WHERE n.client_id = c.id), c.hold "
            "FROM clients c ORDER BY c.id"
        )
        rows = await self._read(lambda c: c.execute(sql).fetchall())
        return [RetentionCandidate(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def erase_client(self, client_id: str, audit: AuditEvent) -> bool:
        """Record the erasure, shred the keys, remove notes, recordings and client; one
        transaction."""

        def op(c: sqlite3.Connection) -> bool:
            row = c.execute(
                "SELECT practitioner_id FROM clients WHERE id = ?", (client_id,)
            ).fetchone()
            if row is None:
                return False
            c.execute("INSERT INTO erasures VALUES (?, ?, ?)", (client_id, row[0], audit.at_us))
            c.execute("DELETE FROM client_keys WHERE client_id = ?", (client_id,))
            erase_rows(c, client_id)
            c.execute("DELETE FROM clients WHERE id = ?", (client_id,))
            self._append_audit(c, audit)
            return True

        return await self._run(op)

    # --- audit -------------------------------------------------------------------------------

    async def record(self, audit: AuditEvent) -> AuditRow:
        """Append a standalone audit entry."""
        return await self._run(lambda c: self._append_audit(c, audit))

    async def audit_page(self, after_seq: int, limit: int) -> list[AuditRow]:
        """Audit rows after ``after_seq``."""
        sql = "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"
        rows = await self._read(lambda c: c.execute(sql, (after_seq, limit)).fetchall())
        return [_audit_row(r) for r in rows]

    def _append_audit(self, c: sqlite3.Connection, event: AuditEvent) -> AuditRow:
        if self._audit_key is None:
            raise RuntimeError("audit key not set; call use_audit_key() after open()")
        last = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        row = next_link(self._audit_key, None if last is None else (last[0], bytes(last[1])), event)
        e = row.event
        c.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.seq, e.at_us, e.actor, e.action, e.client_id, e.purpose, e.detail, *_hashes(row)),
        )
        return row


def _hashes(row: AuditRow) -> tuple[bytes, bytes]:
    return row.prev_hash, row.hash


def _translating(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """``fn`` with SQLite's integrity errors as the journal's typed errors (the transaction
    around it still rolls back)."""

    def run(conn: sqlite3.Connection) -> T:
        try:
            return fn(conn)
        except sqlite3.IntegrityError as exc:
            raise _translate(exc) from None

    return run


def _translate(exc: sqlite3.IntegrityError) -> Exception:
    message = str(exc)
    if message.startswith("append_only"):
        return AppendOnlyViolation(message)
    if "UNIQUE" in message or "PRIMARY KEY" in message:
        return DuplicateRecord(f"record exists already ({message})")
    return exc

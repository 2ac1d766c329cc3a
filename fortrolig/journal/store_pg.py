"""PostgreSQL journal store (asyncpg), for nodes that share one database.

The schema mirrors the SQLite one. Append-only rules are enforced by triggers (row-level for
UPDATE/DELETE, statement-level for TRUNCATE). Audit appends and migrations take transaction-scoped
advisory locks, so several nodes can append to one hash chain and start at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

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
from fortrolig.journal.recordings_pg import PgRecordingRows, erase_rows, migration
from fortrolig.storage.pg_pool import PgPool

T = TypeVar("T")
_MIGRATION_LOCK = 0x666F7274_0001  # "fort" + 1: arbitrary constants, unique to this schema
_AUDIT_LOCK = 0x666F7274_0002

_FUNCTIONS = [
    """CREATE FUNCTION journal_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'append_only: % on % refused', TG_OP, TG_TABLE_NAME;
    END $$""",
    # Rows of a journal may go only once its erasure is recorded and its keys are destroyed.
    """CREATE FUNCTION journal_guard_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE cid TEXT;
    BEGIN
        IF TG_TABLE_NAME = 'clients' THEN cid := OLD.id; ELSE cid := OLD.client_id; END IF;
        IF NOT EXISTS (SELECT 1 FROM erasures WHERE client_id = cid)
           OR (TG_TABLE_NAME <> 'client_keys'
               AND EXISTS (SELECT 1 FROM client_keys WHERE client_id = cid)) THEN
            RAISE EXCEPTION 'append_only: % on % refused (not an erasure)', TG_OP, TG_TABLE_NAME;
        END IF;
        RETURN OLD;
    END $$""",
]

_TABLES = [
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    """CREATE TABLE clients (
        id TEXT PRIMARY KEY, practitioner_id TEXT NOT NULL, created_us BIGINT NOT NULL,
        key_version INTEGER NOT NULL, schema_version INTEGER NOT NULL,
        name_ct BYTEA NOT NULL, contact_ct BYTEA, hold BOOLEAN NOT NULL DEFAULT FALSE)""",
    "CREATE INDEX clients_by_practitioner ON clients (practitioner_id, created_us)",
    """CREATE TABLE client_keys (
        client_id TEXT NOT NULL REFERENCES clients (id), key_version INTEGER NOT NULL,
        kek_id TEXT NOT NULL, kek_version INTEGER NOT NULL, wrapped BYTEA NOT NULL,
        PRIMARY KEY (client_id, key_version))""",
    """CREATE TABLE notes (
        seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,
        client_id TEXT NOT NULL REFERENCES clients (id), practitioner_id TEXT NOT NULL,
        author TEXT NOT NULL, created_us BIGINT NOT NULL, consultation_id TEXT,
        corrects TEXT REFERENCES notes (id), key_version INTEGER NOT NULL,
        schema_version INTEGER NOT NULL, ciphertext BYTEA NOT NULL)""",
    "CREATE INDEX notes_by_client ON notes (client_id, seq)",
    """CREATE TABLE erasures (
        client_id TEXT PRIMARY KEY, practitioner_id TEXT NOT NULL, erased_us BIGINT NOT NULL)""",
    """CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, at_us BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        client_id TEXT, purpose TEXT NOT NULL, detail TEXT NOT NULL,
        prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL)""",
]


def _row_trigger(name: str, event: str, table: str, function: str) -> str:
    return (
        f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def _truncate_trigger(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION journal_refuse()"
    )


_TRIGGERS = [
    _row_trigger("notes_no_update", "UPDATE", "notes", "journal_refuse"),
    _row_trigger("notes_no_delete", "DELETE", "notes", "journal_guard_erasure"),
    _row_trigger(
        "clients_no_update",
        "UPDATE OF id, practitioner_id, created_us, key_version, schema_version, name_ct, "
        "contact_ct",
        "clients",
        "journal_refuse",
    ),
    _row_trigger("clients_no_delete", "DELETE", "clients", "journal_guard_erasure"),
    _row_trigger(
        "keys_no_move", "UPDATE OF client_id, key_version", "client_keys", "journal_refuse"
    ),
    _row_trigger("keys_no_delete", "DELETE", "client_keys", "journal_guard_erasure"),
    _row_trigger("erasures_no_update", "UPDATE OR DELETE", "erasures", "journal_refuse"),
    _row_trigger("audit_no_change", "UPDATE OR DELETE", "audit", "journal_refuse"),
    *(_truncate_trigger(t) for t in ("clients", "client_keys", "notes", "erasures", "audit")),
]

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, _FUNCTIONS + _TABLES + _TRIGGERS),
    (2, migration(_row_trigger, _truncate_trigger)),
]

_CLIENT_COLS = (
    "id, practitioner_id, created_us, key_version, schema_version, name_ct, contact_ct, hold"
)
_NOTE_COLS = (
    "id, client_id, practitioner_id, author, created_us, consultation_id, corrects, "
    "key_version, schema_version, ciphertext"
)


def _client(r: asyncpg.Record) -> ClientRow:
    return ClientRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), _blob(r[6]), bool(r[7]))


def _note(r: asyncpg.Record) -> NoteRow:
    return NoteRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bytes(r[9]))


def _key(r: asyncpg.Record) -> KeyRow:
    return KeyRow(r[0], r[1], r[2], r[3], bytes(r[4]))


def _audit_row(r: asyncpg.Record) -> AuditRow:
    event = AuditEvent(r[1], r[2], r[3], r[4], r[5], r[6])
    return AuditRow(r[0], event, bytes(r[7]), bytes(r[8]))


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class PostgresJournalStore(PgRecordingRows):
    """:class:`~fortrolig.journal.store.JournalStore` on PostgreSQL via an asyncpg pool."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._db = PgPool(dsn, min_size=min_size, max_size=max_size)
        self._audit_key: bytes | None = None

    @property
    def url(self) -> str:
        """The DSN without password."""
        return self._db.url

    def use_audit_key(self, key: bytes) -> None:
        """Set the audit chain HMAC key."""
        self._audit_key = key

    async def open(self) -> None:
        """Create the pool and migrate."""
        await self._db.open(self._migrate)

    async def close(self) -> None:
        """Close the pool; idempotent."""
        await self._db.close()

    async def _tx(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            return await self._db.tx(fn)
        except asyncpg.RaiseError as exc:
            if str(exc).startswith("append_only"):
                raise AppendOnlyViolation(str(exc)) from None
            raise
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateRecord(f"record exists already ({exc.constraint_name})") from None

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._db.pool.fetch(sql, *args)
        return rows

    # --- schema ------------------------------------------------------------------------------

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)"
        )
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version VALUES ($1, $2)", version, time.time_ns() // 1000
                )

    async def schema_version(self) -> int:
        """The newest applied migration."""
        rows = await self._fetch("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0])

    # --- meta --------------------------------------------------------------------------------

    async def get_meta(self, name: str) -> bytes | None:
        """A meta value."""
        rows = await self._fetch("SELECT value FROM meta WHERE name = $1", name)
        return bytes(rows[0][0]) if rows else None

    async def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Insert unless present; return the stored value."""

        async def op(c: asyncpg.Connection) -> bytes:
            await c.execute("INSERT INTO meta VALUES ($1, $2) ON CONFLICT DO NOTHING", name, value)
            return bytes(await c.fetchval("SELECT value FROM meta WHERE name = $1", name))

        return await self._tx(op)

    async def replace_meta(self, name: str, old: bytes, new: bytes) -> bool:
        """Compare-and-set a meta value."""
        sql = "UPDATE meta SET value = $1 WHERE name = $2 AND value = $3"
        status = await self._tx(lambda c: c.execute(sql, new, name, old))
        return bool(status == "UPDATE 1")

    # --- clients and keys --------------------------------------------------------------------

    async def create_client(self, client: ClientRow, key: KeyRow, audit: AuditEvent) -> None:
        """Insert a client, its data key and the audit entry in one transaction."""

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(
                f"INSERT INTO clients ({_CLIENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                client.id,
                client.practitioner_id,
                client.created_us,
                client.key_version,
                client.schema_version,
                client.name_ct,
                client.contact_ct,
                client.hold,
            )
            await c.execute(
                "INSERT INTO client_keys VALUES ($1, $2, $3, $4, $5)",
                key.client_id,
                key.key_version,
                key.kek_id,
                key.kek_version,
                key.wrapped,
            )
            await self._append_audit(c, audit)

        await self._tx(op)

    async def get_client(self, client_id: str) -> ClientRow | None:
        """One client row."""
        rows = await self._fetch(f"SELECT {_CLIENT_COLS} FROM clients WHERE id = $1", client_id)
        return _client(rows[0]) if rows else None

    async def list_clients(self, practitioner_id: str) -> list[ClientRow]:
        """A practitioner's clients, oldest first."""
        sql = (
            f"SELECT {_CLIENT_COLS} FROM clients WHERE practitioner_id = $1 ORDER BY created_us, id"
        )
        return [_client(r) for r in await self._fetch(sql, practitioner_id)]

    async def get_keys(self, client_id: str) -> list[KeyRow]:
        """A client's wrapped data keys."""
        sql = (
            "SELECT client_id, key_version, kek_id, kek_version, wrapped FROM client_keys "
            "WHERE client_id = $1 ORDER BY key_version"
        )
        return [_key(r) for r in await self._fetch(sql, client_id)]

    async def all_keys(self) -> list[KeyRow]:
        """Every wrapped data key."""
        sql = (
            "SELECT client_id, key_version, kek_id, kek_version, wrapped FROM client_keys "
            "ORDER BY client_id, key_version"
        )
        return [_key(r) for r in await self._fetch(sql)]

    async def rewrap_key(self, old: KeyRow, new: KeyRow) -> bool:
        """Compare-and-set one wrap."""
        sql = (
            "UPDATE client_keys SET kek_id = $1, kek_version = $2, wrapped = $3 "
            "WHERE client_id = $4 AND key_version = $5 AND kek_id = $6 AND kek_version = $7 "
            "AND wrapped = $8"
        )
        args = (new.kek_id, new.kek_version, new.wrapped, old.client_id, old.key_version)
        args2 = (old.kek_id, old.kek_version, old.wrapped)
        status = await self._tx(lambda c: c.execute(sql, *args, *args2))
        return bool(status == "UPDATE 1")

    async def set_hold(self, client_id: str, hold: bool, audit: AuditEvent) -> None:
        """Set or clear the retention hold."""

        async def op(c: asyncpg.Connection) -> None:
            await c.execute("UPDATE clients SET hold = $1 WHERE id = $2", hold, client_id)
            await self._append_audit(c, audit)

        await self._tx(op)

    # --- notes -------------------------------------------------------------------------------

    async def append_note(self, note: NoteRow, audit: AuditEvent) -> None:
        """Append a note and its audit entry in one transaction."""

        async def op(c: asyncpg.Connection) -> None:
            await c.execute(
                f"INSERT INTO notes ({_NOTE_COLS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
            )
            await self._append_audit(c, audit)

        await self._tx(op)

    async def list_notes(self, client_id: str) -> list[NoteRow]:
        """A client's notes in write order."""
        sql = f"SELECT {_NOTE_COLS} FROM notes WHERE client_id = $1 ORDER BY seq"
        return [_note(r) for r in await self._fetch(sql, client_id)]

    # --- retention ---------------------------------------------------------------------------

    async def retention_candidates(self) -> list[RetentionCandidate]:
        """Every client with its latest note time."""
        sql = (
            "SELECT c.id, c.practitioner_id, c.created_us, "
            "(SELECT MAX(n.created_us) FROM notes n WHERE n.client_id = c.id), c.hold "
            "FROM clients c ORDER BY c.id"
        )
        rows = await self._fetch(sql)
        return [RetentionCandidate(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    async def erase_client(self, client_id: str, audit: AuditEvent) -> bool:
        """Record the erasure, shred the keys, remove notes and client; one transaction."""

        async def op(c: asyncpg.Connection) -> bool:
            owner = await c.fetchval(
                "SELECT practitioner_id FROM clients WHERE id = $1 FOR UPDATE", client_id
            )
            if owner is None:
                return False
            await c.execute(
                "INSERT INTO erasures VALUES ($1, $2, $3)", client_id, owner, audit.at_us
            )
            await c.execute("DELETE FROM client_keys WHERE client_id = $1", client_id)
            await erase_rows(c, client_id)
            await c.execute("DELETE FROM clients WHERE id = $1", client_id)
            await self._append_audit(c, audit)
            return True

        return await self._tx(op)

    # --- audit -------------------------------------------------------------------------------

    async def record(self, audit: AuditEvent) -> AuditRow:
        """Append a standalone audit entry."""
        return await self._tx(lambda c: self._append_audit(c, audit))

    async def audit_page(self, after_seq: int, limit: int) -> list[AuditRow]:
        """Audit rows after ``after_seq``."""
        sql = (
            "SELECT seq, at_us, actor, action, client_id, purpose, detail, prev_hash, hash "
            "FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
        return [_audit_row(r) for r in await self._fetch(sql, after_seq, limit)]

    async def _append_audit(self, c: asyncpg.Connection, event: AuditEvent) -> AuditRow:
        if self._audit_key is None:
            raise RuntimeError("audit key not set; call use_audit_key() after open()")
        # One chain across all nodes: appends are serialised for the rest of the transaction.
        await c.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)
        last = await c.fetchrow("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        row = next_link(self._audit_key, None if last is None else (last[0], bytes(last[1])), event)
        e = row.event
        await c.execute(
            "INSERT INTO audit VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            row.seq,
            e.at_us,
            e.actor,
            e.action,
            e.client_id,
            e.purpose,
            e.detail,
            row.prev_hash,
            row.hash,
        )
        return row

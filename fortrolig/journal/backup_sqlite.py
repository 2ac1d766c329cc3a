"""The SQLite side of ``fortrolig backup``: consistent snapshots and restores of the journal file.

A snapshot uses SQLite's online backup API (``sqlite3.Connection.backup``) into memory, so it is
one consistent state even while a node writes, and no plaintext copy of the database touches the
disk. A restore builds the new file beside the old one, applies the erasure list (see
:func:`apply_erasures`) before the file is renamed into place, so there is no moment at which an
erased client's keys are back on disk under the live name.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from fortrolig.journal.model import Erasure
from fortrolig.journal.recordings_sqlite import erase_rows


def snapshot(db_path: Path) -> bytes:
    """One consistent image of the database at ``db_path`` (opened read-only)."""
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    dest = sqlite3.connect(":memory:")
    try:
        src.backup(dest)
        return _rollback_mode(dest.serialize())
    finally:
        dest.close()
        src.close()


def read_erasures(db_path: Path) -> list[Erasure]:
    """The erasures recorded in the live database (none if there is none)."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        known = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'erasures'"
        ).fetchone()
        if known is None:
            return []
        rows = conn.execute("SELECT client_id, practitioner_id, erased_us FROM erasures")
        return [Erasure(r[0], r[1], r[2]) for r in rows.fetchall()]
    finally:
        conn.close()


def apply_erasures(conn: sqlite3.Connection, erasures: list[Erasure]) -> None:
    """Re-apply erasures (tombstones) to a restored journal.

    The same order as the live erasure (record it, delete the keys, then notes, recordings and
    client), so the schema's append-only triggers accept it. A client erased after the backup
    was made comes back without keys, notes, recordings or row, with its erasure recorded,
    exactly as on the live node.
    """
    with conn:
        for e in erasures:
            conn.execute(
                "INSERT OR IGNORE INTO erasures VALUES (?, ?, ?)",
                (e.client_id, e.practitioner_id, e.erased_us),
            )
            conn.execute("DELETE FROM client_keys WHERE client_id = ?", (e.client_id,))
            erase_rows(conn, e.client_id)
            conn.execute("DELETE FROM clients WHERE id = ?", (e.client_id,))


def restore(db_path: Path, image: bytes, erasures: list[Erasure]) -> None:
    """Replace ``db_path`` with ``image`` after applying ``erasures``.

    The node must be stopped. The old file (and its WAL) is replaced by rename only after the new
    one is complete and synced; a failure before that leaves the old journal as it was.
    """
    mem = sqlite3.connect(":memory:")
    temp = db_path.with_name(f".{db_path.name}.restoring")
    try:
        mem.deserialize(_rollback_mode(image))
        mem.execute("PRAGMA foreign_keys=ON")
        if mem.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("restored image fails quick_check")
        apply_erasures(mem, erasures)
        temp.unlink(missing_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        out = sqlite3.connect(temp)
        try:
            mem.backup(out)
            out.execute("PRAGMA journal_mode=WAL")
        finally:
            out.close()
        _fsync(temp)
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        os.replace(temp, db_path)
        _fsync(db_path.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        mem.close()


def is_empty(db_path: Path) -> bool:
    """True when there is no journal at ``db_path`` to overwrite."""
    return not db_path.exists() or db_path.stat().st_size == 0


def _rollback_mode(image: bytes) -> bytes:
    """``image`` with its header's file format bytes (offsets 18, 19) set to rollback journal.

    The copy keeps the live file's WAL marker (2, 2); an in-memory database cannot be WAL, so
    SQLite refuses to open such an image. The restored file is switched back to WAL.
    """
    if len(image) < 20 or image[18:20] != b"\x02\x02":
        return image
    return image[:18] + b"\x01\x01" + image[20:]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

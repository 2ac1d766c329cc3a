"""The audit log's hash chain (pure).

Each entry's hash is ``HMAC-SHA256(audit_key, prev_hash || canonical(seq, event))``. Sequence
numbers are assigned by the store as ``last + 1`` inside the appending transaction, so they are
contiguous: a deleted row shows as a gap, an edited row as a hash mismatch, a reordered row as a
broken ``prev_hash`` link. The key is random, kept wrapped by the keyring beside the data, so
someone who can write the database but has no KEK cannot re-forge the chain after an edit.
Truncating the newest entries is only detectable against an outside copy of the head; see
:func:`VerifyReport.head` and docs/journal.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

from fortrolig.journal.model import AuditEvent, AuditRow

GENESIS = bytes(32)
"""``prev_hash`` of the first entry."""

# Actions recorded; stable strings because they are part of the hashed, exported log.
CLIENT_CREATE = "client.create"
CLIENT_LIST = "client.list"
JOURNAL_READ = "journal.read"
NOTE_APPEND = "note.append"
ADDENDUM_APPEND = "addendum.append"
EXPORT_JSON = "export.json"
EXPORT_PDF = "export.pdf"
EXPORT_ALL = "export.all"
IMPORT_JSON = "import.json"
HOLD_SET = "hold.set"
HOLD_READ = "hold.read"
JOURNAL_ERASE = "journal.erase"
KEYS_ROTATE = "keys.rotate"
# Recording (docs/journal.md "Recordings"): each consent step, the start and stop, every part
# stored, every list, playback and export. The detail names the recording; who consented or
# withdrew is the client's data, so it is sealed under the client's data key.
RECORDING_REQUEST = "recording.request"
RECORDING_ACCEPT = "recording.accept"
RECORDING_REFUSE = "recording.refuse"
RECORDING_WITHDRAW = "recording.withdraw"
RECORDING_START = "recording.start"
RECORDING_STOP = "recording.stop"
RECORDING_PART = "recording.part"
RECORDING_LIST = "recording.list"
RECORDING_PLAY = "recording.play"
RECORDING_EXPORT = "recording.export"
RECORDING_CONSENT_ACTIONS = {
    "request": RECORDING_REQUEST,
    "accept": RECORDING_ACCEPT,
    "refuse": RECORDING_REFUSE,
    "withdraw": RECORDING_WITHDRAW,
}

# Purposes the service records for its own actions (read purposes: rules.READ_PURPOSES). Earlier
# entries keep the strings they were hashed with; these are what new entries get.
PURPOSE_ADMINISTRATION = "administration"
PURPOSE_RECORD = "record"
PURPOSE_EXPORT = "export"
PURPOSE_IMPORT = "import"
PURPOSE_LEGAL_HOLD = "legal_hold"
PURPOSE_RETENTION = "retention"
PURPOSE_KEY_ROTATION = "key_rotation"
PURPOSE_CARE = "care"


def canonical(seq: int, event: AuditEvent) -> bytes:
    """The exact bytes hashed for an entry."""
    fields = [
        seq,
        event.at_us,
        event.actor,
        event.action,
        event.client_id,
        event.purpose,
        event.detail,
    ]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def link_hash(key: bytes, prev_hash: bytes, seq: int, event: AuditEvent) -> bytes:
    """The hash of entry ``seq`` following ``prev_hash``."""
    return hmac.new(key, prev_hash + canonical(seq, event), hashlib.sha256).digest()


def next_link(key: bytes, last: tuple[int, bytes] | None, event: AuditEvent) -> AuditRow:
    """Build the row that follows ``last`` (``(seq, hash)`` of the newest entry, or None)."""
    seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    return AuditRow(seq, event, prev, link_hash(key, prev, seq, event))


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of :func:`verify_chain`: ``first_bad_seq`` is None when the chain is intact."""

    checked: int
    first_bad_seq: int | None
    problem: str
    head: tuple[int, str] | None

    @property
    def ok(self) -> bool:
        """True when every entry verified."""
        return self.first_bad_seq is None


class ChainVerifier:
    """Incremental verifier, so a long log can be checked page by page."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._expected_seq = 1
        self._prev = GENESIS
        self._checked = 0
        self._bad: tuple[int, str] | None = None

    def feed(self, rows: Iterable[AuditRow]) -> bool:
        """Check more rows (in seq order); returns False once a problem has been found."""
        for row in rows:
            if self._bad is not None:
                return False
            self._bad = self._check(row)
            if self._bad is None:
                self._checked += 1
                self._expected_seq = row.seq + 1
                self._prev = row.hash
        return self._bad is None

    def report(self) -> VerifyReport:
        """The result so far."""
        head = (self._expected_seq - 1, self._prev.hex()) if self._checked else None
        if self._bad is None:
            return VerifyReport(self._checked, None, "", head)
        return VerifyReport(self._checked, self._bad[0], self._bad[1], head)

    def _check(self, row: AuditRow) -> tuple[int, str] | None:
        if row.seq != self._expected_seq:
            if row.seq > self._expected_seq:
                missing = f"{self._expected_seq}..{row.seq - 1}"
                return self._expected_seq, f"entries {missing} are missing"
            return row.seq, f"entry {row.seq} is out of order or duplicated"
        if not hmac.compare_digest(row.prev_hash, self._prev):
            return row.seq, f"entry {row.seq} does not link to entry {row.seq - 1}"
        expected = link_hash(self._key, row.prev_hash, row.seq, row.event)
        if not hmac.compare_digest(row.hash, expected):
            return row.seq, f"entry {row.seq} was changed after it was written"
        return None


def verify_chain(key: bytes, rows: Iterable[AuditRow]) -> VerifyReport:
    """Verify a whole chain and report the first broken or missing link."""
    verifier = ChainVerifier(key)
    verifier.feed(rows)
    return verifier.report()

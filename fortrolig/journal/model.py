"""Journal records: what the stores keep (encrypted rows) and what the service returns (views).

Pure data: no I/O, no drivers. Times are integer microseconds since the unix epoch (UTC) so that
they survive every store and the JSON export exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

SCHEMA_VERSION = 1
"""Version of the plaintext format inside sealed fields; bound into the associated data."""

MICROS = 1_000_000


def to_micros(seconds: float) -> int:
    """Convert unix seconds (a clock reading) to integer microseconds."""
    return round(seconds * MICROS)


def iso_from_micros(micros: int) -> str:
    """Render microseconds as ISO 8601 UTC with microseconds, e.g. ``...T10:00:00.000001Z``."""
    whole, frac = divmod(micros, MICROS)
    stamp = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:06d}Z"


def micros_from_iso(text: str) -> int:
    """Inverse of :func:`iso_from_micros` (accepts any ISO 8601 with a UTC offset)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


# --- rows as stored (sealed fields are opaque bytes) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientRow:
    """A client of one practitioner; name and contact are sealed under the client's DEK."""

    id: str
    practitioner_id: str
    created_us: int
    key_version: int
    schema_version: int
    name_ct: bytes
    contact_ct: bytes | None
    hold: bool = False


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A client's data key, wrapped by a KEK version (``kek_id``/``kek_version``)."""

    client_id: str
    key_version: int
    kek_id: str
    kek_version: int
    wrapped: bytes


@dataclass(frozen=True, slots=True)
class NoteRow:
    """One journal entry. An addendum is a note whose ``corrects`` names the note it corrects."""

    id: str
    client_id: str
    practitioner_id: str
    author: str
    created_us: int
    consultation_id: str | None
    corrects: str | None
    key_version: int
    schema_version: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which client, when and why (no personal data beyond ids)."""

    at_us: int
    actor: str
    action: str
    client_id: str | None
    purpose: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit event with its place in the chain."""

    seq: int
    event: AuditEvent
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class RetentionCandidate:
    """What retention needs to know about a client: when the journal last changed, and holds."""

    client_id: str
    practitioner_id: str
    created_us: int
    latest_note_us: int | None
    hold: bool

    @property
    def last_activity_us(self) -> int:
        """The latest note's time, or the client's creation time for an empty journal."""
        return self.latest_note_us if self.latest_note_us is not None else self.created_us


@dataclass(frozen=True, slots=True)
class Erasure:
    """A recorded erasure (tombstone): the client whose data key was shredded, and when."""

    client_id: str
    practitioner_id: str
    erased_us: int


# --- decrypted views ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Client:
    """A client as the owning practitioner sees it."""

    id: str
    practitioner_id: str
    name: str
    contact: str | None
    created_us: int
    hold: bool


@dataclass(frozen=True, slots=True)
class Note:
    """A decrypted journal entry; ``corrects`` is set for addenda."""

    id: str
    client_id: str
    author: str
    created_us: int
    consultation_id: str | None
    corrects: str | None
    text: str

    @property
    def is_addendum(self) -> bool:
        """True when this entry corrects an earlier one."""
        return self.corrects is not None


@dataclass(frozen=True, slots=True)
class Journal:
    """A client and every entry of their journal, oldest first."""

    client: Client
    notes: tuple[Note, ...]

    def addenda_of(self, note_id: str) -> tuple[Note, ...]:
        """The entries that correct ``note_id``, oldest first."""
        return tuple(n for n in self.notes if n.corrects == note_id)


@dataclass(frozen=True, slots=True)
class HoldChange:
    """One hold or release of a journal, from the audit log (``reason`` opened, or None)."""

    at_us: int
    actor: str
    hold: bool
    reason: str | None


ERASED_WITH_CLIENT = (
    "recording_chunks",
    "recording_parts",
    "recording_ends",
    "recordings",
    "notes",
)
"""The tables whose rows (column ``client_id``) an erasure deletes after the client's keys and
before the client row, in this order (children before parents). The stores and both backup
restores apply the same list, so a restored backup forgets exactly what the live node did."""

"""Recordings in a client's journal: the rows the stores keep and the views the service returns.

Pure data, like :mod:`fortrolig.journal.model`. A recording is one row written when it starts
(its key wrapped by the client's data key, who consented sealed), one part row per finished
file (written in the same transaction as the file's ciphertext chunks, so a listed part is
always complete), and one end row when it stops. None of them is ever updated: the tables are
append-only like the notes, and only a recorded erasure of the client removes them.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_BYTES = 256 * 1024
"""Ciphertext is stored in rows of this size (64 of the streaming AEAD's 4 KiB segments), so a
range request reads only the rows it needs and no row is too large for either database."""


@dataclass(frozen=True, slots=True)
class RecordingPartInfo:
    """What the media side reports about one finished file (its timeline and content)."""

    index: int
    starts_at_s: float
    duration_s: float
    frames: int
    tracks: int


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """A recording as stored when it starts; ``wrapped_key`` and ``consent_ct`` are sealed
    under the client's data key version ``key_version``."""

    id: str
    client_id: str
    practitioner_id: str
    room_id: str
    started_us: int
    key_version: int
    wrapped_key: bytes
    consent_ct: bytes


@dataclass(frozen=True, slots=True)
class RecordingEndRow:
    """How and when a recording stopped; ``consent_ct`` seals everyone who had consented."""

    recording_id: str
    client_id: str
    ended_us: int
    reason: str
    consent_ct: bytes


@dataclass(frozen=True, slots=True)
class RecordingPartRow:
    """One stored, complete encrypted file of a recording (``size`` bytes of ciphertext in
    ``chunks`` rows of :data:`CHUNK_BYTES`)."""

    recording_id: str
    client_id: str
    index: int
    starts_at_us: int
    duration_us: int
    frames: int
    tracks: int
    size: int
    chunks: int
    added_us: int


@dataclass(frozen=True, slots=True)
class StoredRecording:
    """A recording's rows together (what a store lists)."""

    row: RecordingRow
    end: RecordingEndRow | None
    parts: tuple[RecordingPartRow, ...]


@dataclass(frozen=True, slots=True)
class RecordingPart:
    """A part as the practitioner sees it (plaintext ``size`` in bytes)."""

    index: int
    starts_at_s: float
    duration_s: float
    frames: int
    tracks: int
    size: int


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording of a consultation in a client's journal, opened.

    ``state``: ``recording`` (no end yet), ``finished``, or ``incomplete`` (ended by a crash or
    a failure, so what was written before may be all there is)."""

    id: str
    client_id: str
    room_id: str
    started_us: int
    ended_us: int | None
    reason: str | None
    consented_by: tuple[str, ...]
    parts: tuple[RecordingPart, ...]

    @property
    def state(self) -> str:
        """``recording``, ``finished`` or ``incomplete``."""
        if self.ended_us is None:
            return "recording"
        return "incomplete" if self.reason in ("failed", "recovered") else "finished"

    @property
    def duration_s(self) -> float:
        """The end of the last part on the recording's timeline."""
        return max((p.starts_at_s + p.duration_s for p in self.parts), default=0.0)

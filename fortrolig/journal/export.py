"""Portable exports: the versioned JSON document, its parser, and a streaming zip writer.

JSON schema ``fortrolig.journal`` version 1 (documented in docs/journal.md)::

    {"format": "fortrolig.journal", "version": 1, "exported_at": "<ISO 8601 UTC>",
     "client": {"id", "name", "contact", "created_at"},
     "notes": [{"id", "author", "created_at", "consultation_id", "corrects", "text"}, ...]}

Times are ISO 8601 UTC with microseconds; notes are in write order; an addendum has ``corrects``
set to the id of the note it corrects. Importing a document gives back exactly the same notes.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import IO, Any

from fortrolig.journal.errors import InvalidEntry, UnsupportedExport
from fortrolig.journal.model import Client, Journal, Note, iso_from_micros, micros_from_iso
from fortrolig.journal.recordings_model import Recording

FORMAT = "fortrolig.journal"
VERSION = 1
_DOC_KEYS = {"format", "version", "exported_at", "client", "notes"}
_CLIENT_KEYS = {"id", "name", "contact", "created_at"}
_NOTE_KEYS = {"id", "author", "created_at", "consultation_id", "corrects", "text"}


def to_document(journal: Journal, exported_us: int) -> dict[str, Any]:
    """The JSON-ready export document of one journal."""
    client = journal.client
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": iso_from_micros(exported_us),
        "client": {
            "id": client.id,
            "name": client.name,
            "contact": client.contact,
            "created_at": iso_from_micros(client.created_us),
        },
        "notes": [_note_doc(n) for n in journal.notes],
    }


def _note_doc(note: Note) -> dict[str, Any]:
    return {
        "id": note.id,
        "author": note.author,
        "created_at": iso_from_micros(note.created_us),
        "consultation_id": note.consultation_id,
        "corrects": note.corrects,
        "text": note.text,
    }


def dumps(document: Mapping[str, Any]) -> bytes:
    """Serialise a document as UTF-8 JSON (human-readable, stable key order)."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def from_document(doc: Any, practitioner_id: str) -> Journal:
    """Parse and validate an export document into a journal owned by ``practitioner_id``.

    Raises :class:`UnsupportedExport` for another format or version and :class:`InvalidEntry`
    for a malformed document. Field contents are validated again by the service on import.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UnsupportedExport(f"not a {FORMAT} document")
    if doc.get("version") != VERSION:
        raise UnsupportedExport(f"unsupported {FORMAT} version {doc.get('version')!r}")
    _exact_keys(doc, _DOC_KEYS, "document")
    raw_client = doc["client"]
    _exact_keys(raw_client, _CLIENT_KEYS, "client")
    client = Client(
        id=_str(raw_client, "id"),
        practitioner_id=practitioner_id,
        name=_str(raw_client, "name"),
        contact=_opt_str(raw_client, "contact"),
        created_us=_time(raw_client, "created_at"),
        hold=False,
    )
    if not isinstance(doc["notes"], list):
        raise InvalidEntry("notes must be a list")
    notes = tuple(_parse_note(raw, client.id) for raw in doc["notes"])
    return Journal(client, notes)


def _parse_note(raw: Any, client_id: str) -> Note:
    _exact_keys(raw, _NOTE_KEYS, "note")
    return Note(
        id=_str(raw, "id"),
        client_id=client_id,
        author=_str(raw, "author"),
        created_us=_time(raw, "created_at"),
        consultation_id=_opt_str(raw, "consultation_id"),
        corrects=_opt_str(raw, "corrects"),
        text=_str(raw, "text"),
    )


def _exact_keys(value: Any, keys: set[str], what: str) -> None:
    if not isinstance(value, dict) or set(value) != keys:
        raise InvalidEntry(f"{what} must be an object with exactly the keys {sorted(keys)}")


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidEntry(f"{key} must be a string")
    return value


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    return None if obj[key] is None else _str(obj, key)


def _time(obj: dict[str, Any], key: str) -> int:
    try:
        return micros_from_iso(_str(obj, key))
    except ValueError:
        raise InvalidEntry(f"{key} is not an ISO 8601 UTC time") from None


class _Sink:
    """A write-only, non-seekable file: zipfile then writes data descriptors, fit to stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        """Nothing to flush; chunks are taken with :meth:`take`."""

    def close(self) -> None:
        """Nothing to release."""

    def take(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


class ZipStream:
    """Builds a zip archive incrementally; :meth:`add` returns the bytes ready to send."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(
            self._sink,
            mode="w",
            compression=zipfile.ZIP_DEFLATED,
        )

    def add(self, name: str, data: bytes, date_time: tuple[int, int, int, int, int, int]) -> bytes:
        """Add one file and return the archive bytes produced so far."""
        info = zipfile.ZipInfo(name, date_time=date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        self._zip.writestr(info, data)
        return self._sink.take()

    def open_stored(self, name: str, date_time: tuple[int, int, int, int, int, int]) -> ZipMember:
        """Start a member written piece by piece, stored uncompressed (recordings are
        compressed media already); write to it, then close it, before adding another."""
        info = zipfile.ZipInfo(name, date_time=date_time)
        info.compress_type = zipfile.ZIP_STORED
        return ZipMember(self._zip.open(info, mode="w", force_zip64=True), self._sink)

    def finish(self) -> bytes:
        """Write the central directory and return the final bytes."""
        self._zip.close()
        return self._sink.take()


class ZipMember:
    """One member of a :class:`ZipStream` being written; each call returns the archive bytes
    produced so far."""

    def __init__(self, file: IO[bytes], sink: _Sink) -> None:
        self._file = file
        self._sink = sink

    def write(self, data: bytes) -> bytes:
        """Append ``data`` to the member."""
        self._file.write(data)
        return self._sink.take()

    def close(self) -> bytes:
        """End the member (its data descriptor follows)."""
        self._file.close()
        return self._sink.take()


def recordings_document(recordings: list[Recording]) -> dict[str, Any]:
    """The export's description of a client's recordings (the files sit beside it)."""
    return {
        "format": "fortrolig-recordings",
        "version": 1,
        "recordings": [
            {
                "id": r.id,
                "room_id": r.room_id,
                "started_at": iso_from_micros(r.started_us),
                "ended_at": None if r.ended_us is None else iso_from_micros(r.ended_us),
                "state": r.state,
                "reason": r.reason,
                "consented_by": list(r.consented_by),
                "parts": [
                    {
                        "file": f"recording.{r.id}.{p.index}.webm",
                        "starts_at_s": p.starts_at_s,
                        "duration_s": p.duration_s,
                    }
                    for p in r.parts
                ],
            }
            for r in recordings
        ],
    }


def read_zip(data: bytes) -> dict[str, bytes]:
    """Every member of a zip archive (for tests and tooling)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}

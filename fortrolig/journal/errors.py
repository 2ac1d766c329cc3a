"""Typed journal errors; each carries a stable code the HTTP layer maps to a status."""

from __future__ import annotations

from fortrolig.core.aead import IntegrityError
from fortrolig.core.errors import BadRequest, Conflict, Forbidden, FortroligError, NotFound

__all__ = [
    "AnonymousClient",
    "AppendOnlyViolation",
    "AuditChainBroken",
    "ClientNotFound",
    "DuplicateRecord",
    "IntegrityError",
    "InvalidEntry",
    "InvalidPurpose",
    "InvalidReportPeriod",
    "JournalForbidden",
    "NoteNotFound",
    "UnsupportedExport",
]


class InvalidEntry(BadRequest):
    """A note, addendum or client field is empty, too long or malformed."""

    code = "invalid_entry"


class InvalidPurpose(BadRequest):
    """A read purpose that is not on the documented list (free text is never audited)."""

    code = "invalid_purpose"


class InvalidReportPeriod(BadRequest):
    """An audit report's ``--since``/``--until`` is not an ISO 8601 time, or not in order."""

    code = "invalid_period"


class AnonymousClient(BadRequest):
    """Anonymous clients have no journal: nothing about them may be stored."""

    code = "anonymous_client"


class JournalForbidden(Forbidden):
    """The caller's role may not use the journal at all."""

    code = "journal_forbidden"


class ClientNotFound(NotFound):
    """No such client for this practitioner (another practitioner's client looks the same)."""

    code = "client_not_found"


class NoteNotFound(NotFound):
    """The note an addendum refers to is not in this journal."""

    code = "note_not_found"


class DuplicateRecord(Conflict):
    """A record with this id exists already (e.g. importing the same export twice)."""

    code = "duplicate_record"


class UnsupportedExport(BadRequest):
    """An export document of an unknown format or version."""

    code = "unsupported_export"


class AppendOnlyViolation(FortroligError):
    """Something tried to change or delete a journal or audit row; the store refused."""

    code = "append_only_violation"
    status = 500


class AuditChainBroken(IntegrityError):
    """The audit log's hash chain does not verify."""

    code = "audit_chain_broken"


class RecordingNotFound(NotFound):
    """No such recording (or part) in the caller's client journal."""

    code = "recording_not_found"


class PlaybackTicketInvalid(Forbidden):
    """A playback URL that is forged, altered, expired or for another deployment."""

    code = "playback_ticket_invalid"

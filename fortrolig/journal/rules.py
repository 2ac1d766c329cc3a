"""Pure journal rules: who may do what, and what a valid entry is.

Authorization lives here, in the domain, not in the HTTP routes: every service method calls
:func:`require_practitioner` and :func:`require_owner` before touching data.
"""

from __future__ import annotations

import re

from fortrolig.core.principal import Principal
from fortrolig.journal.errors import (
    AnonymousClient,
    ClientNotFound,
    InvalidEntry,
    InvalidPurpose,
    JournalForbidden,
    NoteNotFound,
)
from fortrolig.journal.model import ClientRow, NoteRow

PRACTITIONER_ROLE = "practitioner"
MAX_NOTE_CHARS = 100_000
"""A long session note is a few thousand characters; this bounds memory and PDF size."""
MAX_NAME_CHARS = 200
MAX_CONTACT_CHARS = 1_000
MAX_REASON_CHARS = 1_000
_ID_RE = re.compile(r"^[a-z]{1,16}_[a-z0-9]{8,64}$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def require_practitioner(principal: Principal) -> str:
    """Return the practitioner id, or raise when the caller is not a practitioner."""
    if principal.role != PRACTITIONER_ROLE or not principal.subject:
        raise JournalForbidden(f"role {principal.role!r} may not use the journal")
    return principal.subject


def require_owner(practitioner_id: str, client: ClientRow | None, client_id: str) -> ClientRow:
    """Return ``client`` if it exists and belongs to ``practitioner_id``.

    Another practitioner's client is reported exactly like a missing one, so ids cannot be probed.
    """
    if client is None or client.practitioner_id != practitioner_id:
        raise ClientNotFound(f"no client {client_id!r}")
    return client


def refuse_anonymous(anonymous: bool) -> None:
    """Anonymous clients have no journal; creating one for them is refused."""
    if anonymous:
        raise AnonymousClient("an anonymous client has no journal; nothing can be recorded")


def validate_id(value: str, what: str) -> str:
    """Check an id has the ``prefix_base32`` shape of :func:`fortrolig.core.ids.new_id`."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidEntry(f"{what} {value!r} is not a valid id")
    return value


def validate_text(text: str, *, what: str = "note", limit: int = MAX_NOTE_CHARS) -> str:
    """A note or addendum: non-blank, at most ``limit`` characters, valid Unicode, no controls."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidEntry(f"{what} text must not be empty")
    if len(text) > limit:
        raise InvalidEntry(f"{what} text is {len(text)} characters; the limit is {limit}")
    if _CONTROL_RE.search(text):
        raise InvalidEntry(f"{what} text contains control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from "\ud800" in JSON
        raise InvalidEntry(f"{what} text is not valid Unicode") from None
    return text


def validate_name(name: str) -> str:
    """A client's display name."""
    return validate_text(name, what="client name", limit=MAX_NAME_CHARS).strip()


def validate_contact(contact: str | None) -> str | None:
    """Optional contact details (free text: e-mail, phone, address)."""
    if contact is None or (isinstance(contact, str) and not contact.strip()):
        return None
    return validate_text(contact, what="contact", limit=MAX_CONTACT_CHARS).strip()


READ_PURPOSES = frozenset(
    {"care", "supervision", "correction", "access_request", "complaint", "legal_request"}
)
"""Why a practitioner reads a journal, from a fixed list (docs/journal.md): the audit log is
plaintext, so it never holds free text a practitioner typed."""


def validate_purpose(purpose: object) -> str:
    """A read purpose from :data:`READ_PURPOSES`; anything else is ``invalid_purpose``."""
    if not isinstance(purpose, str) or purpose not in READ_PURPOSES:
        raise InvalidPurpose(f"purpose must be one of: {', '.join(sorted(READ_PURPOSES))}")
    return purpose


def validate_reason(reason: str | None) -> str | None:
    """An optional free-text reason (a hold's): sealed under the client's key, never plain."""
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        return None
    return validate_text(reason, what="reason", limit=MAX_REASON_CHARS).strip()


def require_correctable(notes: list[NoteRow], note_id: str) -> NoteRow:
    """An addendum must correct an entry of the same journal (a note or an earlier addendum)."""
    for note in notes:
        if note.id == note_id:
            return note
    raise NoteNotFound(f"no note {note_id!r} in this journal")

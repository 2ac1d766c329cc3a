"""Sealing and opening journal rows: the journal's use of :mod:`fortrolig.core.aead`.

Every personal field is sealed under the client's data key with associated data naming the
practitioner, client, row id, field, record version, key version and schema version, plus the row's
plaintext metadata (author, time, consultation, corrected note), so no column of a row can be
changed or moved without the row failing to open.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable

from fortrolig.core.aead import (
    AssociatedData,
    IntegrityError,
    Keyring,
    WrappedKey,
    new_data_key,
    open_sealed,
    seal,
)
from fortrolig.journal.model import SCHEMA_VERSION, Client, ClientRow, KeyRow, Note, NoteRow

RECORD_VERSION = 1
"""Rows are immutable, so every record has version 1; an edit path would have to bump it."""
FIRST_KEY_VERSION = 1
AUDIT_KEY_META = "audit_key"


class JournalCipher:
    """Creates, wraps and unwraps client data keys and seals/opens rows with them."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        """The keyring holding the KEKs."""
        return self._keyring

    # --- data keys ---------------------------------------------------------------------------

    def new_key(self, client_id: str) -> tuple[bytes, KeyRow]:
        """A fresh DEK for ``client_id`` and its wrapped row."""
        dek = new_data_key()
        wrapped = self._keyring.wrap(dek)
        row = KeyRow(
            client_id, FIRST_KEY_VERSION, wrapped.kek_id, wrapped.kek_version, wrapped.wrapped
        )
        return dek, row

    def unwrap(self, row: KeyRow) -> bytes:
        """The DEK of ``row``; a tampered wrap or KEK version is an :class:`IntegrityError`."""
        return self._keyring.unwrap(WrappedKey(row.kek_id, row.kek_version, row.wrapped))

    def keys_by_version(self, rows: Iterable[KeyRow], client_id: str) -> dict[int, bytes]:
        """Unwrap all key versions of one client; none left means the journal was shredded."""
        keys = {row.key_version: self.unwrap(row) for row in rows if row.client_id == client_id}
        if not keys:
            raise IntegrityError(f"client {client_id} has no data key (erased?)")
        return keys

    def rewrap(self, row: KeyRow) -> KeyRow | None:
        """``row`` rewrapped under the current KEK version, or None if it already is."""
        if row.kek_id == self._keyring.kek_id and row.kek_version == self._keyring.current_version:
            return None
        wrapped = self._keyring.wrap(self.unwrap(row))
        return KeyRow(
            row.client_id, row.key_version, wrapped.kek_id, wrapped.kek_version, wrapped.wrapped
        )

    # --- the audit chain key -----------------------------------------------------------------

    def new_audit_key_blob(self) -> tuple[bytes, bytes]:
        """A fresh audit HMAC key and its wrapped form for the store's meta table."""
        key = new_data_key()
        return key, _encode_wrapped(self._keyring.wrap(key))

    def open_audit_key(self, blob: bytes) -> bytes:
        """Unwrap the stored audit key."""
        return self._keyring.unwrap(_decode_wrapped(blob))

    def rewrap_audit_key(self, blob: bytes) -> bytes | None:
        """The audit key blob under the current KEK version, or None if it already is."""
        wrapped = _decode_wrapped(blob)
        if (wrapped.kek_id, wrapped.kek_version) == (
            self._keyring.kek_id,
            self._keyring.current_version,
        ):
            return None
        return _encode_wrapped(self._keyring.wrap(self._keyring.unwrap(wrapped)))

    # --- clients -----------------------------------------------------------------------------

    def seal_client(self, dek: bytes, client: Client) -> ClientRow:
        """Seal a client's name and contact."""
        contact_ct = None
        if client.contact is not None:
            aad = _client_aad(client.practitioner_id, client.id, client.created_us, "contact")
            contact_ct = seal(dek, client.contact.encode("utf-8"), aad)
        name_aad = _client_aad(client.practitioner_id, client.id, client.created_us, "name")
        return ClientRow(
            id=client.id,
            practitioner_id=client.practitioner_id,
            created_us=client.created_us,
            key_version=FIRST_KEY_VERSION,
            schema_version=SCHEMA_VERSION,
            name_ct=seal(dek, client.name.encode("utf-8"), name_aad),
            contact_ct=contact_ct,
            hold=client.hold,
        )

    def open_client(self, row: ClientRow, keys: dict[int, bytes]) -> Client:
        """Open a client row; raises :class:`IntegrityError` on any tampering."""
        dek = _key_for(keys, row.key_version, row.id)
        name = open_sealed(dek, row.name_ct, _client_row_aad(row, "name"))
        contact = None
        if row.contact_ct is not None:
            contact = open_sealed(dek, row.contact_ct, _client_row_aad(row, "contact"))
        return Client(
            id=row.id,
            practitioner_id=row.practitioner_id,
            name=_text(name, row.id),
            contact=None if contact is None else _text(contact, row.id),
            created_us=row.created_us,
            hold=row.hold,
        )

    # --- notes -------------------------------------------------------------------------------

    def seal_note(self, dek: bytes, key_version: int, practitioner_id: str, note: Note) -> NoteRow:
        """Seal a note (or addendum) written in ``practitioner_id``'s journal of the client."""
        row = NoteRow(
            id=note.id,
            client_id=note.client_id,
            practitioner_id=practitioner_id,
            author=note.author,
            created_us=note.created_us,
            consultation_id=note.consultation_id,
            corrects=note.corrects,
            key_version=key_version,
            schema_version=SCHEMA_VERSION,
            ciphertext=b"",
        )
        ciphertext = seal(dek, note.text.encode("utf-8"), note_aad(row))
        return dataclasses.replace(row, ciphertext=ciphertext)

    def open_note(self, row: NoteRow, keys: dict[int, bytes]) -> Note:
        """Open a note row; raises :class:`IntegrityError` on any tampering."""
        dek = _key_for(keys, row.key_version, row.client_id)
        text = open_sealed(dek, row.ciphertext, note_aad(row))
        return Note(
            id=row.id,
            client_id=row.client_id,
            author=row.author,
            created_us=row.created_us,
            consultation_id=row.consultation_id,
            corrects=row.corrects,
            text=_text(text, row.id),
        )

    # --- free text kept with an audit entry --------------------------------------------------

    def seal_audit_text(
        self, dek: bytes, key_version: int, entry: AuditTextContext, text: str
    ) -> str:
        """Seal free text that goes with an audit entry (a hold's reason) under the client's
        data key. The entry stays plaintext and hash-chained; the text is erased with the client
        (crypto-shredding) and the chain still verifies, since it hashes the ciphertext."""
        sealed = seal(dek, text.encode("utf-8"), entry.aad(key_version))
        doc = {"key_version": key_version, "sealed": base64.b64encode(sealed).decode("ascii")}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def open_audit_text(self, blob: str, keys: dict[int, bytes], entry: AuditTextContext) -> str:
        """Open :meth:`seal_audit_text`'s output; :class:`IntegrityError` if tampered or moved."""
        try:
            doc = json.loads(blob)
            version, sealed = int(doc["key_version"]), base64.b64decode(doc["sealed"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"malformed sealed audit text: {exc}") from None
        dek = _key_for(keys, version, entry.client_id)
        return _text(open_sealed(dek, sealed, entry.aad(version)), entry.client_id)


@dataclasses.dataclass(frozen=True, slots=True)
class AuditTextContext:
    """The audit entry a sealed text belongs to: it cannot be moved to another entry."""

    practitioner_id: str
    client_id: str
    action: str
    at_us: int

    def aad(self, key_version: int) -> AssociatedData:
        """Associated data naming the entry and the key version."""
        return AssociatedData(
            tenant=self.practitioner_id,
            client=self.client_id,
            record=f"audit:{self.at_us}",
            field=f"audit.{self.action}",
            version=RECORD_VERSION,
            key_version=key_version,
            schema_version=SCHEMA_VERSION,
            context=str(self.at_us),
        )


def note_aad(row: NoteRow) -> AssociatedData:
    """The associated data binding a note's ciphertext to every other column of its row."""
    context = json.dumps(
        [row.author, row.created_us, row.consultation_id, row.corrects], separators=(",", ":")
    )
    return AssociatedData(
        tenant=row.practitioner_id,
        client=row.client_id,
        record=row.id,
        field="note",
        version=RECORD_VERSION,
        key_version=row.key_version,
        schema_version=row.schema_version,
        context=context,
    )


def _client_aad(
    practitioner_id: str, client_id: str, created_us: int, field: str
) -> AssociatedData:
    return AssociatedData(
        tenant=practitioner_id,
        client=client_id,
        record=client_id,
        field=f"client.{field}",
        version=RECORD_VERSION,
        key_version=FIRST_KEY_VERSION,
        schema_version=SCHEMA_VERSION,
        context=str(created_us),
    )


def _client_row_aad(row: ClientRow, field: str) -> AssociatedData:
    return AssociatedData(
        tenant=row.practitioner_id,
        client=row.id,
        record=row.id,
        field=f"client.{field}",
        version=RECORD_VERSION,
        key_version=row.key_version,
        schema_version=row.schema_version,
        context=str(row.created_us),
    )


def _key_for(keys: dict[int, bytes], version: int, record: str) -> bytes:
    key = keys.get(version)
    if key is None:
        raise IntegrityError(f"{record} names data key version {version}, which does not exist")
    return key


def _text(raw: bytes, record: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Authenticated but not UTF-8 means it was sealed by something else; treat as tampering.
        raise IntegrityError(f"{record} decrypted to invalid UTF-8") from None


def _encode_wrapped(wrapped: WrappedKey) -> bytes:
    doc = {
        "kek_id": wrapped.kek_id,
        "kek_version": wrapped.kek_version,
        "wrapped": base64.b64encode(wrapped.wrapped).decode("ascii"),
    }
    return json.dumps(doc, sort_keys=True).encode("ascii")


def _decode_wrapped(blob: bytes) -> WrappedKey:
    try:
        doc = json.loads(blob)
        return WrappedKey(
            str(doc["kek_id"]), int(doc["kek_version"]), base64.b64decode(doc["wrapped"])
        )
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("stored audit key is malformed") from None

"""The journal service: every use case, authorized in the domain and audited.

Practitioner operations take a :class:`~fortrolig.core.principal.Principal`; a practitioner sees
and changes only their own clients (another practitioner's client is "not found"). Operator
operations (key rotation, audit verification, retention) take an ``actor`` string for the audit
log and are meant for the CLI and the scheduled retention task.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from fortrolig.core.aead import Keyring
from fortrolig.core.clock import Clock
from fortrolig.core.ids import new_id
from fortrolig.core.principal import Principal
from fortrolig.journal import audit, export, rules
from fortrolig.journal.audit import ChainVerifier, VerifyReport
from fortrolig.journal.crypto import AUDIT_KEY_META, AuditTextContext, JournalCipher
from fortrolig.journal.errors import ClientNotFound, DuplicateRecord, InvalidEntry
from fortrolig.journal.model import (
    MICROS,
    AuditEvent,
    AuditRow,
    Client,
    ClientRow,
    HoldChange,
    Journal,
    KeyRow,
    Note,
    RetentionCandidate,
    to_micros,
)
from fortrolig.journal.pdf import DEFAULT_ZONE, render_pdf
from fortrolig.journal.recording_service import RecordingJournal
from fortrolig.journal.retention import DEFAULT_RETENTION_YEARS, due_for_erasure
from fortrolig.journal.store import JournalStore

_AUDIT_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class RotationReport:
    """Outcome of :meth:`JournalService.rotate_keys`."""

    kek_version: int
    rewrapped: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class AuditWindow:
    """Outcome of :meth:`JournalService.audit_window`: the period's rows (seq order), the
    verification of the whole chain, and how many entries were read."""

    rows: tuple[AuditRow, ...]
    chain: VerifyReport
    entries: int


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Outcome of a retention run: the journals that were (or, in a dry run, would be) erased."""

    dry_run: bool
    due: tuple[RetentionCandidate, ...]
    erased: int


class JournalService:
    """Use cases of the journal on top of a store, a keyring and a clock."""

    def __init__(
        self,
        store: JournalStore,
        keyring: Keyring,
        clock: Clock,
        *,
        retention_years: int = DEFAULT_RETENTION_YEARS,
    ) -> None:
        if retention_years < 1:
            raise ValueError("retention_years must be at least 1")
        self._store = store
        self._cipher = JournalCipher(keyring)
        self._clock = clock
        self._retention_years = retention_years
        self._pdf_slot = asyncio.Semaphore(1)
        # How exports are written for people: the practice's zone, practitioners by name (the
        # app sets both; the journal imports no accounts).
        self.zone: ZoneInfo = DEFAULT_ZONE
        self.practitioner_name: Callable[[str], Awaitable[str | None]] | None = None
        self.recordings = RecordingJournal(store, self._cipher, clock)
        """Recordings kept in the clients' journals (consent trail, files, playback)."""

    @property
    def store(self) -> JournalStore:
        """The underlying store."""
        return self._store

    async def start(self) -> None:
        """Open and migrate the store and load (or create) the audit chain key."""
        await self._store.open()
        blob = await self._store.get_meta(AUDIT_KEY_META)
        if blob is None:
            _, fresh = self._cipher.new_audit_key_blob()
            blob = await self._store.put_meta_if_absent(AUDIT_KEY_META, fresh)
        audit_key = self._cipher.open_audit_key(blob)
        self._store.use_audit_key(audit_key)
        self.recordings.use_audit_key(audit_key)

    async def close(self) -> None:
        """Close the store; idempotent."""
        await self._store.close()

    def _now(self) -> int:
        return to_micros(self._clock.now())

    def _event(
        self, actor: str, action: str, client_id: str | None, purpose: str, detail: str = ""
    ) -> AuditEvent:
        return AuditEvent(self._now(), actor, action, client_id, purpose, detail)

    # --- clients -----------------------------------------------------------------------------

    async def list_clients(self, principal: Principal) -> list[Client]:
        """The caller's clients (decrypted), oldest first."""
        pid = rules.require_practitioner(principal)
        rows = await self._store.list_clients(pid)
        await self._store.record(
            self._event(pid, audit.CLIENT_LIST, None, audit.PURPOSE_ADMINISTRATION)
        )
        clients = []
        for row in rows:
            key_rows = await self._store.get_keys(row.id)
            if key_rows:  # no keys: erased by retention between the two queries
                clients.append(self._cipher.open_client(row, self._keys(key_rows, row.id)))
        return clients

    async def create_client(
        self,
        principal: Principal,
        name: str,
        contact: str | None = None,
        *,
        anonymous: bool = False,
    ) -> Client:
        """Create a client with a fresh data key; anonymous clients are refused."""
        pid = rules.require_practitioner(principal)
        rules.refuse_anonymous(anonymous)
        client = Client(
            id=new_id("cli"),
            practitioner_id=pid,
            name=rules.validate_name(name),
            contact=rules.validate_contact(contact),
            created_us=self._now(),
            hold=False,
        )
        await self._insert_client(
            client, self._event(pid, audit.CLIENT_CREATE, client.id, audit.PURPOSE_ADMINISTRATION)
        )
        return client

    async def _insert_client(self, client: Client, event: AuditEvent) -> None:
        dek, key_row = self._cipher.new_key(client.id)
        row = self._cipher.seal_client(dek, client)
        await self._store.create_client(row, key_row, event)

    async def set_hold(
        self, principal: Principal, client_id: str, hold: bool, reason: str | None = None
    ) -> None:
        """Hold (or release) a journal from retention, e.g. while a complaint case is open.

        The audit entry's purpose is ``legal_hold``; the free-text ``reason`` is sealed under
        the client's data key in the entry's detail, so it is erased with the client."""
        pid = rules.require_practitioner(principal)
        rules.require_owner(pid, await self._store.get_client(client_id), client_id)
        text = rules.validate_reason(reason)
        at_us = self._now()
        detail: dict[str, object] = {"hold": hold}
        if text is not None:
            keys = self._cipher.keys_by_version(await self._store.get_keys(client_id), client_id)
            version = max(keys)
            entry = AuditTextContext(pid, client_id, audit.HOLD_SET, at_us)
            detail["reason"] = self._cipher.seal_audit_text(keys[version], version, entry, text)
        event = AuditEvent(
            at_us,
            pid,
            audit.HOLD_SET,
            client_id,
            audit.PURPOSE_LEGAL_HOLD,
            json.dumps(detail, sort_keys=True, separators=(",", ":")),
        )
        await self._store.set_hold(client_id, hold, event)

    async def hold_history(
        self, principal: Principal, client_id: str, purpose: str = "care"
    ) -> list[HoldChange]:
        """Every hold change of the caller's client, oldest first, with its reason opened.

        The reasons are the client's data: the read is audited (``hold.read``) first."""
        pid = rules.require_practitioner(principal)
        rules.require_owner(pid, await self._store.get_client(client_id), client_id)
        purpose = rules.validate_purpose(purpose)
        await self._store.record(self._event(pid, audit.HOLD_READ, client_id, purpose))
        keys = self._cipher.keys_by_version(await self._store.get_keys(client_id), client_id)
        changes, after = [], 0
        while page := await self._store.audit_page(after, _AUDIT_PAGE):
            after = page[-1].seq
            for row in page:
                e = row.event
                if e.action == audit.HOLD_SET and e.client_id == client_id:
                    changes.append(self._hold_change(e, keys))
        return changes

    def _hold_change(self, e: AuditEvent, keys: dict[int, bytes]) -> HoldChange:
        try:
            detail = json.loads(e.detail)
        except ValueError:
            detail = None
        if not isinstance(detail, dict):  # written before reasons were sealed: "True"/"False"
            return HoldChange(e.at_us, e.actor, e.detail == "True", None)
        blob, reason = detail.get("reason"), None
        if isinstance(blob, str):
            entry = AuditTextContext(e.actor, e.client_id or "", e.action, e.at_us)
            reason = self._cipher.open_audit_text(blob, keys, entry)
        return HoldChange(e.at_us, e.actor, bool(detail.get("hold")), reason)

    # --- reading and writing -----------------------------------------------------------------

    async def read_journal(
        self, principal: Principal, client_id: str, purpose: str = "care"
    ) -> Journal:
        """A client's journal; the read and its purpose are audited before data is returned."""
        pid = rules.require_practitioner(principal)
        journal = await self._load(pid, client_id)
        purpose = rules.validate_purpose(purpose)
        await self._store.record(self._event(pid, audit.JOURNAL_READ, client_id, purpose))
        return journal

    async def add_note(
        self, principal: Principal, client_id: str, text: str, consultation_id: str | None = None
    ) -> Note:
        """Append a note to the caller's client's journal."""
        pid = rules.require_practitioner(principal)
        text = rules.validate_text(text)
        if consultation_id is not None:
            rules.validate_id(consultation_id, "consultation id")
        row = rules.require_owner(pid, await self._store.get_client(client_id), client_id)
        note = Note(new_id("note"), client_id, pid, self._now(), consultation_id, None, text)
        await self._append(row, note, audit.NOTE_APPEND)
        return note

    async def add_addendum(
        self, principal: Principal, client_id: str, note_id: str, text: str
    ) -> Note:
        """Append an addendum correcting ``note_id`` (which must be in the same journal)."""
        pid = rules.require_practitioner(principal)
        text = rules.validate_text(text, what="addendum")
        row = rules.require_owner(pid, await self._store.get_client(client_id), client_id)
        target = rules.require_correctable(await self._store.list_notes(client_id), note_id)
        note = Note(
            new_id("note"), client_id, pid, self._now(), target.consultation_id, target.id, text
        )
        await self._append(row, note, audit.ADDENDUM_APPEND)
        return note

    async def _append(self, client: ClientRow, note: Note, action: str) -> None:
        keys = self._cipher.keys_by_version(await self._store.get_keys(client.id), client.id)
        version = max(keys)
        row = self._cipher.seal_note(keys[version], version, client.practitioner_id, note)
        event = self._event(
            client.practitioner_id, action, client.id, audit.PURPOSE_RECORD, note.id
        )
        await self._store.append_note(row, event)

    def _keys(self, key_rows: list[KeyRow], client_id: str) -> dict[int, bytes]:
        return self._cipher.keys_by_version(key_rows, client_id)

    async def _load(self, pid: str, client_id: str) -> Journal:
        row = rules.require_owner(pid, await self._store.get_client(client_id), client_id)
        key_rows = await self._store.get_keys(client_id)
        if not key_rows:
            raise ClientNotFound(f"no client {client_id!r} (erased)")
        keys = self._keys(key_rows, client_id)
        client = self._cipher.open_client(row, keys)
        notes = await self._store.list_notes(client_id)
        return Journal(client, tuple(self._cipher.open_note(n, keys) for n in notes))

    # --- export and import -------------------------------------------------------------------

    async def export_json(self, principal: Principal, client_id: str) -> bytes:
        """One client's journal as the versioned JSON document (UTF-8 bytes)."""
        pid = rules.require_practitioner(principal)
        journal = await self._load(pid, client_id)
        await self._store.record(
            self._event(pid, audit.EXPORT_JSON, client_id, audit.PURPOSE_EXPORT)
        )
        return export.dumps(export.to_document(journal, self._now()))

    async def export_pdf(self, principal: Principal, client_id: str) -> bytes:
        """One client's journal as a readable PDF."""
        pid = rules.require_practitioner(principal)
        journal = await self._load(pid, client_id)
        await self._store.record(
            self._event(pid, audit.EXPORT_PDF, client_id, audit.PURPOSE_EXPORT)
        )
        return await self._render_pdf(journal, self._now())

    async def export_all(self, principal: Principal) -> AsyncIterator[bytes]:
        """Everything the caller holds as a zip (``<client id>.json`` + ``.pdf`` each), streamed.

        Each client's export is audited before its bytes are produced.
        """
        pid = rules.require_practitioner(principal)
        rows = await self._store.list_clients(pid)
        archive = ZipDate.now(self._clock.now())
        stream = export.ZipStream()
        for row in rows:
            try:
                journal = await self._load(pid, row.id)
            except ClientNotFound:
                continue  # erased by retention while the export ran
            await self._store.record(
                self._event(pid, audit.EXPORT_ALL, row.id, audit.PURPOSE_EXPORT)
            )
            now = self._now()
            yield stream.add(
                f"{row.id}.json", export.dumps(export.to_document(journal, now)), archive
            )
            pdf = await self._render_pdf(journal, now)
            yield stream.add(f"{row.id}.pdf", pdf, archive)
            async for piece in self._export_recordings(pid, row.id, stream, archive):
                yield piece
        yield stream.finish()

    async def _export_recordings(
        self, pid: str, client_id: str, stream: export.ZipStream, archive: ZipDateTuple
    ) -> AsyncIterator[bytes]:
        """A client's recordings in the zip: ``<client>.recordings.json`` (who consented,
        when, the parts) and each part decrypted as ``<client>.recording.<id>.<n>.webm``."""
        recordings = await self.recordings.describe(client_id)
        if not recordings:
            return
        doc = export.recordings_document(recordings)
        yield stream.add(f"{client_id}.recordings.json", export.dumps(doc), archive)
        async for name, reader in self.recordings.export_parts(pid, client_id):
            member = stream.open_stored(f"{client_id}.recording.{name}", archive)
            async for plain in reader.chunks():
                yield member.write(plain)
            yield member.close()

    async def _render_pdf(self, journal: Journal, exported_us: int) -> bytes:
        # fpdf2 needs ~10 ms per KB of note text (2 s for 100 notes of 2 KB): run it in a thread,
        # one at a time, so the event loop (signaling, media) keeps going between GIL switches.
        names: dict[str, str] = {}
        if self.practitioner_name is not None:
            for author in {n.author for n in journal.notes}:
                name = await self.practitioner_name(author)
                if name:
                    names[author] = name
        async with self._pdf_slot:
            return await asyncio.to_thread(render_pdf, journal, exported_us, self.zone, names)

    async def import_json(self, principal: Principal, data: bytes) -> Journal:
        """Import an export document as a client of the caller, keeping ids, times and authors.

        Refuses a document whose client or note ids exist already (e.g. imported twice).
        """
        pid = rules.require_practitioner(principal)
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidEntry("export is not valid JSON") from None
        journal = _validated(export.from_document(doc, pid))
        if await self._store.get_client(journal.client.id) is not None:
            raise DuplicateRecord(f"client {journal.client.id} exists already")
        event = self._event(pid, audit.IMPORT_JSON, journal.client.id, audit.PURPOSE_IMPORT)
        await self._insert_client(journal.client, event)
        row = rules.require_owner(pid, await self._store.get_client(journal.client.id), "")
        for note in journal.notes:
            await self._append(row, note, audit.IMPORT_JSON)
        return journal

    # --- operator tasks ----------------------------------------------------------------------

    async def rotate_keys(self, actor: str = "operator") -> RotationReport:
        """Add a KEK version and rewrap every data key (and the audit key); data is untouched."""
        version = self._cipher.keyring.rotate()
        rewrapped = unchanged = 0
        for old in await self._store.all_keys():
            new = self._cipher.rewrap(old)
            if new is not None and await self._store.rewrap_key(old, new):
                rewrapped += 1
            else:
                unchanged += 1
        blob = await self._store.get_meta(AUDIT_KEY_META)
        if blob is not None:
            new_blob = self._cipher.rewrap_audit_key(blob)
            if new_blob is not None:
                await self._store.replace_meta(AUDIT_KEY_META, blob, new_blob)
        detail = f"kek_version={version} rewrapped={rewrapped}"
        await self._store.record(
            self._event(actor, audit.KEYS_ROTATE, None, audit.PURPOSE_KEY_ROTATION, detail)
        )
        return RotationReport(version, rewrapped, unchanged)

    async def verify_audit(self) -> VerifyReport:
        """Verify the whole audit chain; the report names the first broken or missing link."""
        blob = await self._store.get_meta(AUDIT_KEY_META)
        if blob is None:
            return ChainVerifier(b"").report()
        verifier = ChainVerifier(self._cipher.open_audit_key(blob))
        after = 0
        while page := await self._store.audit_page(after, _AUDIT_PAGE):
            if not verifier.feed(page):
                break
            after = page[-1].seq
        return verifier.report()

    async def audit_window(self, since_us: int, until_us: int) -> AuditWindow:
        """The audit rows written in ``since_us <= at < until_us``, and the whole chain checked.

        Every entry is read: a row verifies only through every earlier link, and entry times
        need not follow ``seq`` (several nodes' clocks, a clock stepped back). Reading goes on
        past a broken link, so the rows after it are still reported (as unverified). Nothing is
        written, so this can run against a restored copy of the journal during an inquiry.
        """
        blob = await self._store.get_meta(AUDIT_KEY_META)
        verifier = ChainVerifier(self._cipher.open_audit_key(blob) if blob is not None else b"")
        kept: list[AuditRow] = []
        after = entries = 0
        while page := await self._store.audit_page(after, _AUDIT_PAGE):
            verifier.feed(page)
            kept.extend(r for r in page if since_us <= r.event.at_us < until_us)
            entries += len(page)
            after = page[-1].seq
        return AuditWindow(tuple(kept), verifier.report(), entries)

    async def retention(self, *, dry_run: bool, actor: str = "retention") -> RetentionReport:
        """Erase (crypto-shred) every journal past retention and not on hold; or just list them."""
        candidates = await self._store.retention_candidates()
        due = tuple(due_for_erasure(candidates, self._now(), self._retention_years))
        erased = 0
        if not dry_run:
            for candidate in due:
                detail = f"last activity {candidate.last_activity_us // MICROS}"
                event = self._event(
                    actor, audit.JOURNAL_ERASE, candidate.client_id, audit.PURPOSE_RETENTION, detail
                )
                erased += await self._store.erase_client(candidate.client_id, event)
        return RetentionReport(dry_run, due, erased)


ZipDateTuple = tuple[int, int, int, int, int, int]


class ZipDate:
    """Zip member timestamps (local-time 6-tuples, as the zip format wants)."""

    @staticmethod
    def now(seconds: float) -> tuple[int, int, int, int, int, int]:
        """The UTC time ``seconds`` as a zip date (zip cannot hold years before 1980)."""
        t = datetime.fromtimestamp(max(seconds, 315_532_800), UTC)
        return (t.year, t.month, t.day, t.hour, t.minute, t.second)


def _validated(journal: Journal) -> Journal:
    """Imported content passes the same rules as content typed in."""
    client = journal.client
    rules.validate_id(client.id, "client id")
    rules.validate_name(client.name)
    rules.validate_contact(client.contact)
    seen: set[str] = set()
    for note in journal.notes:
        rules.validate_id(note.id, "note id")
        rules.validate_text(note.text)
        if note.corrects is not None and note.corrects not in seen:
            raise InvalidEntry(f"note {note.id} corrects {note.corrects}, not an earlier note")
        if note.id in seen:
            raise InvalidEntry(f"note id {note.id} appears twice")
        seen.add(note.id)
    return journal

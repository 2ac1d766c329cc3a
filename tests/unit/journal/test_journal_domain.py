"""Pure journal rules: retention, audit chain, export document, PDF, crypto rows."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fortrolig.core.aead import IntegrityError, new_data_key
from fortrolig.core.principal import Principal
from fortrolig.journal import audit, export, rules
from fortrolig.journal.crypto import JournalCipher
from fortrolig.journal.errors import (
    AnonymousClient,
    ClientNotFound,
    InvalidEntry,
    InvalidPurpose,
    JournalForbidden,
    UnsupportedExport,
)
from fortrolig.journal.model import (
    AuditEvent,
    AuditRow,
    Client,
    Journal,
    Note,
    RetentionCandidate,
    iso_from_micros,
    micros_from_iso,
)
from fortrolig.journal.pdf import find_unicode_font, render_pdf
from fortrolig.journal.retention import add_years, due_for_erasure

DAY = 86_400_000_000
T0 = micros_from_iso("2020-02-29T12:00:00.000001Z")


@given(st.integers(0, 4_000_000_000 * 1_000_000))
def test_iso_round_trip(micros: int) -> None:
    assert micros_from_iso(iso_from_micros(micros)) == micros


def test_add_years_handles_leap_day() -> None:
    assert iso_from_micros(add_years(T0, 5)) == "2025-03-01T12:00:00.000001Z"
    assert iso_from_micros(add_years(T0, 4)) == "2024-02-29T12:00:00.000001Z"


def test_due_for_erasure_exactly_at_five_years_and_never_on_hold() -> None:
    deadline = add_years(T0, 5)
    cands = [
        RetentionCandidate("cli_due", "p", T0 - DAY, T0, hold=False),
        RetentionCandidate("cli_held", "p", T0 - DAY, T0, hold=True),
        RetentionCandidate("cli_newer", "p", T0 - DAY, T0 + 1, hold=False),
        RetentionCandidate("cli_empty", "p", T0, None, hold=False),
    ]
    assert [c.client_id for c in due_for_erasure(cands, deadline - 1)] == []
    assert [c.client_id for c in due_for_erasure(cands, deadline)] == ["cli_due", "cli_empty"]
    assert due_for_erasure(cands, deadline, years=10) == []
    with pytest.raises(ValueError):
        due_for_erasure(cands, deadline, years=0)


def _events(n: int) -> list[AuditEvent]:
    return [AuditEvent(i, "prac_a", "journal.read", "cli_x", "care", "") for i in range(n)]


def _chain(key: bytes, n: int) -> list[AuditRow]:
    rows: list[AuditRow] = []
    for event in _events(n):
        last = (rows[-1].seq, rows[-1].hash) if rows else None
        rows.append(audit.next_link(key, last, event))
    return rows


def test_audit_chain_verifies_and_reports_first_problem() -> None:
    key = new_data_key()
    rows = _chain(key, 6)
    assert audit.verify_chain(key, rows).ok
    edited = list(rows)
    edited[3] = dataclasses.replace(rows[3], event=dataclasses.replace(rows[3].event, actor="m"))
    report = audit.verify_chain(key, edited)
    assert (report.first_bad_seq, report.checked) == (4, 3)
    assert audit.verify_chain(key, rows[:2] + rows[3:]).first_bad_seq == 3
    swapped = [*rows[:2], dataclasses.replace(rows[3], seq=3), dataclasses.replace(rows[2], seq=4)]
    assert audit.verify_chain(key, swapped + rows[4:]).first_bad_seq == 3
    assert not audit.verify_chain(new_data_key(), rows).ok
    rows_reforged = _chain(new_data_key(), 6)  # an intruder without the key cannot re-forge
    assert audit.verify_chain(key, rows_reforged).first_bad_seq == 1


def test_rules() -> None:
    assert rules.require_practitioner(Principal("p", "practitioner")) == "p"
    with pytest.raises(JournalForbidden):
        rules.require_practitioner(Principal("p", "admin"))
    with pytest.raises(ClientNotFound):
        rules.require_owner("p", None, "cli_x")
    with pytest.raises(AnonymousClient):
        rules.refuse_anonymous(True)
    for bad in ("", "  ", "a\x00b", "x" * 100_001):
        with pytest.raises(InvalidEntry):
            rules.validate_text(bad)
    assert rules.validate_contact("  ") is None
    with pytest.raises(InvalidEntry):
        rules.validate_id("../etc", "note id")


def _journal() -> Journal:
    client = Client("cli_abcdefgh", "prac_a", "Åse Ærø-Øster", "tlf 12 34 56 78", T0, False)
    note = Note("note_aaaaaaaa", client.id, "prac_a", T0 + 1, "cons_abcdefgh", None, "Første")
    fix = Note("note_bbbbbbbb", client.id, "prac_a", T0 + 2, None, note.id, "Rettelse — “ok” ✓")
    return Journal(client, (note, fix))


def test_export_document_round_trip_and_errors() -> None:
    journal = _journal()
    doc = json.loads(export.dumps(export.to_document(journal, T0 + 5)))
    assert export.from_document(doc, "prac_a") == journal
    with pytest.raises(UnsupportedExport):
        export.from_document({**doc, "version": 2}, "prac_a")
    with pytest.raises(UnsupportedExport):
        export.from_document([], "prac_a")
    with pytest.raises(InvalidEntry):
        export.from_document({**doc, "extra": 1}, "prac_a")
    bad_note = {**doc, "notes": [{**doc["notes"][0], "created_at": "yesterday"}]}
    with pytest.raises(InvalidEntry):
        export.from_document(bad_note, "prac_a")


def test_pdf_renders_danish_text() -> None:
    assert find_unicode_font() is not None, "install fonts-dejavu-core"
    pdf = render_pdf(_journal(), T0 + 5)
    assert pdf.startswith(b"%PDF-") and b"DejaVu" in pdf


def test_pdf_times_are_local_with_the_zone_and_authors_are_named() -> None:
    from zoneinfo import ZoneInfo

    from fortrolig.journal.pdf import _Stamps

    stamps = _Stamps(ZoneInfo("Europe/Copenhagen"), {"prac_a": "Mette Hansen"})
    winter = 1_796_734_800 * 1_000_000  # 2026-12-08 13:00 UTC
    assert stamps.at(winter) == "2026-12-08 14:00 CET"
    assert stamps.at(winter - 182 * 86_400 * 1_000_000).endswith("CEST")
    assert stamps.who("prac_a") == "Mette Hansen (prac_a)" and stamps.who("prac_x") == "prac_x"
    pdf = render_pdf(_journal(), T0 + 5, ZoneInfo("Europe/Copenhagen"), {"prac_a": "Mette"})
    assert pdf.startswith(b"%PDF-")


def test_cipher_rows_bind_every_column() -> None:
    class Ring:
        kek_id, current_version = "k", 1

        def wrap(self, dek: bytes) -> object: ...

    cipher = JournalCipher(Ring())  # type: ignore[arg-type]
    dek = new_data_key()
    journal = _journal()
    row = cipher.seal_note(dek, 1, "prac_a", journal.notes[1])
    assert cipher.open_note(row, {1: dek}) == journal.notes[1]
    for change in (
        {"author": "x"},
        {"created_us": 1},
        {"consultation_id": "cons_x"},
        {"corrects": None},
        {"practitioner_id": "prac_b"},
        {"client_id": "cli_other"},
        {"id": "note_other"},
        {"schema_version": 2},
    ):
        with pytest.raises(IntegrityError):
            cipher.open_note(dataclasses.replace(row, **change), {1: dek})
    with pytest.raises(IntegrityError):
        cipher.open_note(dataclasses.replace(row, key_version=2), {1: dek, 2: new_data_key()})
    client_row = cipher.seal_client(dek, journal.client)
    assert cipher.open_client(client_row, {1: dek}) == journal.client
    assert client_row.contact_ct is not None
    swapped = dataclasses.replace(client_row, name_ct=client_row.contact_ct)
    with pytest.raises(IntegrityError):
        cipher.open_client(swapped, {1: dek})


@pytest.mark.parametrize("purpose", sorted(rules.READ_PURPOSES))
def test_every_listed_read_purpose_passes(purpose: str) -> None:
    assert rules.validate_purpose(purpose) == purpose


@pytest.mark.parametrize("bad", ["", " care", "CARE", "her divorce", None, 7, "treatment"])
def test_a_purpose_off_the_list_is_refused(bad: object) -> None:
    with pytest.raises(InvalidPurpose) as caught:
        rules.validate_purpose(bad)
    assert caught.value.code == "invalid_purpose"


def test_a_hold_reason_is_optional_free_text_within_limits() -> None:
    assert rules.validate_reason(None) is None and rules.validate_reason("  ") is None
    assert rules.validate_reason(" klagesag ") == "klagesag"
    with pytest.raises(InvalidEntry):
        rules.validate_reason("x" * (rules.MAX_REASON_CHARS + 1))

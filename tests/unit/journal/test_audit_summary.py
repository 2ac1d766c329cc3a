"""The breach report's pure part: periods, filtering, summaries, chain marks, and its PDF."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fortrolig.journal import audit
from fortrolig.journal.audit_report import (
    FORMAT,
    NodeInfo,
    Period,
    build_report,
    parse_period,
    parse_time,
    summary_lines,
)
from fortrolig.journal.audit_report_pdf import render_report_pdf
from fortrolig.journal.errors import InvalidReportPeriod
from fortrolig.journal.model import AuditEvent, AuditRow, micros_from_iso
from tests.support.pdf import page_count

KEY = b"k" * 32
NODE = NodeInfo("node-a", "eu-north", ("eu-north", "eu-west"), "sqlite:///x/journal.db")
T0 = micros_from_iso("2026-12-01T10:00:00Z")
HOUR = 3_600_000_000
A, B = "cli_aaaaaaaaaaaaaaaaaaaaaaaaaa", "cli_bbbbbbbbbbbbbbbbbbbbbbbbbb"
SEALED_HOLD = json.dumps({"hold": True, "reason": '{"key_version":1,"sealed":"q83v"}'})


def _chain(events: list[AuditEvent]) -> list[AuditRow]:
    rows: list[AuditRow] = []
    for event in events:
        last = (rows[-1].seq, rows[-1].hash) if rows else None
        rows.append(audit.next_link(KEY, last, event))
    return rows


def _ev(
    hours: float, action: str, client: str | None, purpose: str, detail: str = ""
) -> AuditEvent:
    return AuditEvent(T0 + int(hours * HOUR), "prac_alice", action, client, purpose, detail)


EVENTS = [
    _ev(-1, audit.CLIENT_CREATE, A, audit.PURPOSE_ADMINISTRATION),  # before the period
    _ev(0, audit.CLIENT_CREATE, B, audit.PURPOSE_ADMINISTRATION),  # at since: included
    _ev(0.5, audit.NOTE_APPEND, B, audit.PURPOSE_RECORD, "note_bbbbbbbbbbbbbbbbbbbbbbbbb1"),
    _ev(1, audit.JOURNAL_READ, A, "complaint"),
    _ev(1.5, audit.EXPORT_PDF, B, audit.PURPOSE_EXPORT),
    _ev(1.6, audit.HOLD_SET, B, audit.PURPOSE_LEGAL_HOLD, SEALED_HOLD),
    _ev(1.7, audit.CLIENT_LIST, None, audit.PURPOSE_ADMINISTRATION),
    dataclasses.replace(
        _ev(1.8, audit.JOURNAL_ERASE, A, audit.PURPOSE_RETENTION, "last activity 1"),
        actor="retention",
    ),
    _ev(2, audit.JOURNAL_READ, B, "care"),  # at until: excluded
]
PERIOD = Period(T0, T0 + 2 * HOUR)


def _report(rows: list[AuditRow]) -> dict[str, object]:
    return build_report(
        rows, PERIOD, audit.verify_chain(KEY, rows), NODE, generated_us=T0, entries=len(rows)
    )


def test_periods_are_iso_with_offset_or_dates_and_ordered() -> None:
    assert parse_time("2026-12-01T11:00:00+01:00", "x") == T0
    assert parse_time("2026-12-01", "x") == micros_from_iso("2026-12-01T00:00:00Z")
    assert parse_period("2026-12-01", "2026-12-02").until_us - T0 == 14 * HOUR
    for bad in ("yesterday", "2026-12-01T10:00:00", "2026-13-01", "", "12/01/2026"):
        with pytest.raises(InvalidReportPeriod) as info:
            parse_time(bad, "--since")
        assert info.value.code == "invalid_period" and "--since" in info.value.message
    for since, until in (("2026-12-02", "2026-12-01"), ("2026-12-01", "2026-12-01")):
        with pytest.raises(InvalidReportPeriod, match="must be before"):
            parse_period(since, until)


def test_the_report_holds_exactly_the_period_half_open() -> None:
    doc = _report(_chain(EVENTS))
    events = doc["events"]
    assert isinstance(events, list)
    assert [e["seq"] for e in events] == [2, 3, 4, 5, 6, 7, 8]
    assert doc["format"] == FORMAT and doc["version"] == 1
    assert doc["period"] == {
        "since": "2026-12-01T10:00:00.000000Z",
        "until": "2026-12-01T12:00:00.000000Z",
    }
    assert doc["node"] == {
        "id": "node-a",
        "region": "eu-north",
        "allowed_regions": ["eu-north", "eu-west"],
        "store": "sqlite:///x/journal.db",
    }
    chain = doc["chain"]
    assert isinstance(chain, dict)
    assert (chain["ok"], chain["checked"], chain["entries"], chain["reported_unverified"]) == (
        True,
        9,
        9,
        0,
    )


def test_rows_are_classified_and_no_sealed_or_free_text_is_copied() -> None:
    rows = _chain(EVENTS)
    odd = audit.next_link(
        KEY, (rows[-1].seq, rows[-1].hash), _ev(1.9, "future.thing", B, "care", "typed words")
    )
    doc = _report([*rows, odd])
    by_seq = {e["seq"]: e for e in doc["events"]}  # type: ignore[attr-defined]
    assert by_seq[3]["record_id"] == "note_bbbbbbbbbbbbbbbbbbbbbbbbb1"
    assert by_seq[6]["detail"] == "hold on, reason sealed"
    assert by_seq[8]["detail"] == "last activity 1" and by_seq[8]["actor"] == "retention"
    assert by_seq[10]["category"] == "other" and by_seq[10]["detail"] is None
    assert [by_seq[s]["category"] for s in (2, 3, 4, 5, 6, 7, 8)] == [
        "change",
        "change",
        "read",
        "export",
        "change",
        "read",
        "change",
    ]
    text = json.dumps(doc)
    assert "q83v" not in text and "typed words" not in text


def test_summaries_per_client_and_actor() -> None:
    doc = _report(_chain(EVENTS))
    clients = {c["client_id"]: c for c in doc["clients"]}  # type: ignore[attr-defined]
    assert list(clients) == [A, B]  # sorted; the client.list row has no client
    a, b = clients[A], clients[B]
    assert (a["reads"], a["exports"], a["changes"], a["created"], a["erased"]) == (
        1,
        0,
        1,
        False,  # created before the period
        True,
    )
    assert a["practitioners"] == ["prac_alice", "retention"]
    assert a["purposes"] == {"complaint": 1, "retention": 1}
    assert (b["reads"], b["exports"], b["changes"], b["created"], b["erased"]) == (
        0,
        1,
        3,
        True,
        False,
    )
    assert b["records"] == ["note_bbbbbbbbbbbbbbbbbbbbbbbbb1"]
    assert (b["first_at"], b["last_at"]) == (
        "2026-12-01T10:00:00.000000Z",
        "2026-12-01T11:36:00.000000Z",
    )
    assert doc["totals"] == {
        "events": 7,
        "clients": 2,
        "records": 1,
        "actors": 2,
        "by_category": {"change": 4, "export": 1, "read": 2},
        "by_action": {
            "client.create": 1,
            "client.list": 1,
            "export.pdf": 1,
            "hold.set": 1,
            "journal.erase": 1,
            "journal.read": 1,
            "note.append": 1,
        },
    }
    actors = {x["actor"]: x for x in doc["actors"]}  # type: ignore[attr-defined]
    assert (actors["prac_alice"]["events"], actors["prac_alice"]["clients"]) == (6, 2)
    assert actors["retention"]["actions"] == {"journal.erase": 1}


def test_times_out_of_seq_order_are_filtered_by_time_and_listed_by_seq() -> None:
    skewed = [EVENTS[1], EVENTS[0], EVENTS[3], EVENTS[2]]  # another node's clock lagging
    rows = _chain(skewed)
    doc = _report(list(reversed(rows)))
    assert [(e["seq"], e["action"]) for e in doc["events"]] == [  # type: ignore[attr-defined]
        (1, "client.create"),
        (3, "journal.read"),
        (4, "note.append"),
    ]


def test_a_broken_chain_marks_the_rows_from_the_break_on() -> None:
    rows = _chain(EVENTS)
    rows[4] = dataclasses.replace(rows[4], event=dataclasses.replace(rows[4].event, purpose="x"))
    doc = _report(rows)
    chain = doc["chain"]
    assert isinstance(chain, dict)
    assert (chain["ok"], chain["first_bad_seq"], chain["checked"]) == (False, 5, 4)
    assert "changed" in chain["problem"]
    assert chain["head"]["seq"] == 4
    marks = [(e["seq"], e["verified"]) for e in doc["events"]]  # type: ignore[attr-defined]
    assert marks == [
        (2, True),
        (3, True),
        (4, True),
        (5, False),
        (6, False),
        (7, False),
        (8, False),
    ]
    assert chain["reported_unverified"] == 4
    assert "BROKEN at entry 5" in summary_lines(doc)[-1]


def test_pdf_is_a_pdf_marked_with_the_chain_state_and_grows_bypage_count() -> None:
    rows = _chain(EVENTS)
    pdf = render_report_pdf(_report(rows))
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 1 and b"(audit-chain-ok)" in pdf
    many = _chain([_ev(i / 1000, audit.JOURNAL_READ, B, "care") for i in range(300)])
    assert page_count(render_report_pdf(_report(many))) > 3
    broken = list(rows)
    broken[2] = dataclasses.replace(broken[2], prev_hash=bytes(32))
    assert b"(audit-chain-broken)" in render_report_pdf(_report(broken))
    empty = build_report([], PERIOD, audit.verify_chain(KEY, []), NODE, generated_us=T0, entries=0)
    assert page_count(render_report_pdf(empty)) == 1

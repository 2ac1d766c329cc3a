"""`fortrolig audit report` over a real journal (SQLite and PostgreSQL): exactly the period's
events, a valid PDF, a tampered chain marked with exit 1, and typed refusals that write nothing."""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fortrolig.app.cli import main
from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import Principal
from fortrolig.journal.model import iso_from_micros, to_micros
from fortrolig.journal.service import JournalService
from tests.support.pdf import page_count

YEAR = 365 * 86_400
NAME, CONTACT = "Åse Æbelø", "aase@example.dk"
NOTE, FIX, REASON = "Søvnproblemer, angst", "Rettelse: tirsdag", "Klagesag om samtalen"


@dataclass
class Scene:
    """What the test did, and the period that holds the middle part of it."""

    config: Path
    since: str
    until: str
    old: str
    client: str
    records: list[str]


def _config_file(tmp_path: Path, store_url: str, keyring: FileKeyring) -> Path:
    path = tmp_path / "fortrolig.toml"
    path.write_text(
        f'[server]\ndata_dir = "{tmp_path / "data"}"\nregion = "eu-west"\n'
        '[coordination]\nnode_id = "node-west-1"\ndefault_regions = ["eu-west", "eu-central"]\n'
        f'[journal]\ndatabase_url = "{store_url}"\n'
        f'keyring_path = "{keyring.path}"\n',
        encoding="utf-8",
    )
    return path


def _iso(seconds: float) -> str:
    return iso_from_micros(to_micros(seconds))


async def _scene(
    service: JournalService, alice: Principal, clock: FakeClock, config: Path
) -> Scene:
    old = await service.create_client(alice, "Gammel Klient", None)
    await service.add_note(alice, old.id, "for længe siden")
    clock.advance(6 * YEAR)  # the old journal is now past retention
    since = _iso(clock.now() - 1)
    client = await service.create_client(alice, NAME, CONTACT)
    note = await service.add_note(alice, client.id, NOTE)
    clock.advance(1)
    fix = await service.add_addendum(alice, client.id, note.id, FIX)
    clock.advance(1)
    await service.read_journal(alice, client.id, "supervision")
    await service.export_json(alice, client.id)
    await service.export_pdf(alice, client.id)
    await service.set_hold(alice, client.id, True, REASON)
    await service.hold_history(alice, client.id, "legal_request")
    assert (await service.retention(dry_run=False)).erased == 1
    await service.list_clients(alice)
    until = _iso(clock.now() + 60)
    clock.advance(3600)
    await service.read_journal(alice, client.id, "care")  # after the period
    return Scene(config, since, until, old.id, client.id, [note.id, fix.id])


@pytest.fixture
def config_file(tmp_path: Path, store_url: str, keyring: FileKeyring) -> Path:
    """A configuration naming the test's journal database and keyring."""
    return _config_file(tmp_path, store_url, keyring)


async def _cli(*argv: str) -> int:
    # The command runs its own event loop (asyncio.run), so it needs a thread of its own.
    return await asyncio.to_thread(main, list(argv))


def _report_args(scene: Scene, *more: str) -> list[str]:
    return ["audit", "report", "--config", str(scene.config), "--since", scene.since,
            "--until", scene.until, *more]  # fmt: skip


async def test_the_report_lists_exactly_the_events_of_the_period(
    service: JournalService,
    alice: Principal,
    clock: FakeClock,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = await _scene(service, alice, clock, config_file)
    entries = len(await service.store.audit_page(0, 1000))
    out = tmp_path / "report.json"
    assert await _cli(*_report_args(scene, "--out", str(out))) == 0
    assert "audit chain OK" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    raw = out.read_text(encoding="utf-8")
    doc = json.loads(raw)
    c, old = scene.client, scene.old
    assert [(e["action"], e["client_id"]) for e in doc["events"]] == [
        ("client.create", c),
        ("note.append", c),
        ("addendum.append", c),
        ("journal.read", c),
        ("export.json", c),
        ("export.pdf", c),
        ("hold.set", c),
        ("hold.read", c),
        ("journal.erase", old),
        ("client.list", None),
    ]
    assert [e["record_id"] for e in doc["events"][1:3]] == scene.records
    assert [e["purpose"] for e in doc["events"][3:8:4]] == ["supervision", "legal_request"]
    summaries = {s["client_id"]: s for s in doc["clients"]}
    assert summaries[c]["records"] == sorted(scene.records)
    assert (summaries[c]["reads"], summaries[c]["exports"], summaries[c]["changes"]) == (2, 2, 4)
    assert (summaries[old]["erased"], summaries[old]["practitioners"]) == (True, ["retention"])
    assert doc["chain"]["ok"] and doc["chain"]["entries"] == entries
    assert doc["node"]["id"] == "node-west-1" and doc["node"]["region"] == "eu-west"
    assert doc["node"]["allowed_regions"] == ["eu-west", "eu-central"]
    assert doc["node"]["store"] == service.store.url
    assert all(e["verified"] for e in doc["events"])
    for secret in (NAME, CONTACT, NOTE, FIX, REASON, "Gammel Klient", "længe"):
        assert secret not in raw
    # Read-only: the report appended nothing to the audit log.
    assert len(await service.store.audit_page(0, 1000)) == entries
    assert await _cli(*_report_args(scene)) == 0  # JSON on stdout without --out
    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == doc["events"]


async def test_the_pdf_report(
    service: JournalService,
    alice: Principal,
    clock: FakeClock,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = await _scene(service, alice, clock, config_file)
    out = tmp_path / "report.pdf"
    assert await _cli(*_report_args(scene, "--format", "pdf", "--out", str(out), "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "out": str(out),
        "format": "pdf",
        "events": 10,
        "clients": 2,
        "chain_ok": True,
        "first_bad_seq": None,
    }
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 1 and b"(audit-chain-ok)" in pdf
    for _ in range(120):  # enough reads in the period to need more pages
        await service.read_journal(alice, scene.client, "care")
    scene.until = _iso(clock.now() + 60)
    longer = tmp_path / "longer.pdf"
    assert await _cli(*_report_args(scene, "--format", "pdf", "--out", str(longer))) == 0
    assert page_count(longer.read_bytes()) > 1


async def test_a_tampered_chain_is_reported_marked_with_exit_1(
    service: JournalService,
    alice: Principal,
    clock: FakeClock,
    config_file: Path,
    tmp_path: Path,
    raw: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = await _scene(service, alice, clock, config_file)
    rows = await service.store.audit_page(0, 1000)
    (read,) = [r for r in rows if r.event.purpose == "supervision"]
    await raw.drop_guards("audit")
    await raw.execute(f"UPDATE audit SET purpose = 'care' WHERE seq = {read.seq}")
    out, pdf = tmp_path / "report.json", tmp_path / "report.pdf"
    assert await _cli(*_report_args(scene, "--out", str(out))) == 1
    assert f"audit chain BROKEN at entry {read.seq}" in capsys.readouterr().out
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert (doc["chain"]["ok"], doc["chain"]["first_bad_seq"]) == (False, read.seq)
    assert "changed after it was written" in doc["chain"]["problem"]
    assert [e["verified"] for e in doc["events"]] == [e["seq"] < read.seq for e in doc["events"]]
    assert len(doc["events"]) == 10  # still every event of the period
    assert await _cli(*_report_args(scene, "--format", "pdf", "--out", str(pdf))) == 1
    assert b"(audit-chain-broken)" in pdf.read_bytes()
    assert await _cli("audit", "verify", "--config", str(scene.config)) == 1  # they agree


async def test_bad_input_is_a_typed_error_and_writes_nothing(
    service: JournalService,
    alice: Principal,
    clock: FakeClock,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scene = await _scene(service, alice, clock, config_file)
    entries = len(await service.store.audit_page(0, 1000))
    existing = tmp_path / "old-report.json"
    existing.write_text("evidence", encoding="utf-8")
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x", encoding="utf-8")
    out = str(tmp_path / "r.json")
    cases = [
        (["--since", "yesterday", "--until", scene.until, "--out", out], "invalid_period"),
        (["--since", "2026-12-01T10:00:00", "--until", scene.until], "invalid_period"),
        (["--since", scene.until, "--until", scene.since, "--out", out], "invalid_period"),
        (["--since", scene.since, "--until", scene.since], "invalid_period"),
        ([*_period(scene), "--format", "xml", "--out", out], "unsupported_format"),
        ([*_period(scene), "--format", "pdf"], "output_required"),
        ([*_period(scene), "--out", str(tmp_path / "no" / "such" / "r.json")], "output_unwritable"),
        ([*_period(scene), "--out", str(not_a_folder / "r.json")], "output_unwritable"),
        ([*_period(scene), "--out", str(existing)], "output_exists"),
    ]
    before = _listing(tmp_path)
    for argv, code in cases:
        status = await _cli("audit", "report", "--config", str(scene.config), *argv)
        captured = capsys.readouterr()
        assert status == 1, (argv, captured.err)
        assert captured.out == ""
        assert captured.err.startswith(f"fortrolig: {code}: "), (argv, captured.err)
    assert _listing(tmp_path) == before
    assert existing.read_text(encoding="utf-8") == "evidence"
    assert len(await service.store.audit_page(0, 1000)) == entries
    # A mistyped data dir is a configuration error (exit 2), and creates no journal there.
    missing = tmp_path / "typo"
    assert await _cli("audit", "report", "--data-dir", str(missing), *_period(scene)) == 2
    assert capsys.readouterr().err.startswith("fortrolig: config_error: ")
    assert not (missing / "journal.db").exists()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _period(scene: Scene) -> list[str]:
    return ["--since", scene.since, "--until", scene.until]

"""Operator commands as plain functions; ``fortrolig.app`` wires them to the command line.

Each returns a process exit code (0 success, 1 a problem was found) and prints a short report, or
with ``as_json`` one JSON object (for scripts and monitoring). They never create a journal: a
missing keyring or SQLite file is a :class:`~fortrolig.core.errors.ConfigError` (a mistyped
``--data-dir`` must not verify an empty new journal as "OK").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fortrolig.core.clock import Clock, SystemClock
from fortrolig.core.errors import BadRequest
from fortrolig.core.outfile import check_format, check_new_file, write_new_file
from fortrolig.journal import audit_report as report_doc
from fortrolig.journal.audit_report import NodeInfo
from fortrolig.journal.audit_report_pdf import render_report_pdf
from fortrolig.journal.factory import open_journal
from fortrolig.journal.model import iso_from_micros, to_micros
from fortrolig.journal.retention import DEFAULT_RETENTION_YEARS, erase_after
from fortrolig.journal.service import JournalService

Out = Callable[[str], object]


def keys_rotate(
    data_dir: Path,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    as_json: bool = False,
    out: Out = print,
) -> int:
    """``fortrolig keys rotate``: add a KEK version and rewrap every data key."""

    async def run(service: JournalService) -> int:
        report = await service.rotate_keys(actor="cli:keys-rotate")
        if as_json:
            doc = {
                "kek_version": report.kek_version,
                "rewrapped": report.rewrapped,
                "unchanged": report.unchanged,
            }
            out(_dumps(doc))
        else:
            out(
                f"KEK version {report.kek_version}: rewrapped {report.rewrapped} data keys "
                f"({report.unchanged} unchanged)"
            )
        return 0

    return _with_service(run, data_dir, database_url, keyring_path)


def audit_verify(
    data_dir: Path,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    as_json: bool = False,
    out: Out = print,
) -> int:
    """``fortrolig audit verify``: check the audit hash chain; 1 and the first bad link if not."""

    async def run(service: JournalService) -> int:
        report = await service.verify_audit()
        if as_json:
            head = {"seq": report.head[0], "hash": report.head[1]} if report.head else None
            doc = {
                "ok": report.ok,
                "checked": report.checked,
                "first_bad_seq": report.first_bad_seq,
                "problem": report.problem or None,
                "head": head,
            }
            out(_dumps(doc))
            return 0 if report.ok else 1
        head_text = f"head seq {report.head[0]} hash {report.head[1]}" if report.head else "empty"
        if report.ok:
            out(f"audit log OK: {report.checked} entries, {head_text}")
            return 0
        out(f"audit log BROKEN at entry {report.first_bad_seq}: {report.problem}")
        out(f"{report.checked} entries verified before it")
        return 1

    return _with_service(run, data_dir, database_url, keyring_path)


REPORT_FORMATS = ("json", "pdf")


def audit_report(
    data_dir: Path,
    *,
    since: str,
    until: str,
    node: NodeInfo,
    fmt: str = "json",
    out_path: Path | None = None,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    clock: Clock | None = None,
    as_json: bool = False,
    out: Out = print,
) -> int:
    """``fortrolig audit report``: who read, exported or changed which journals in a period.

    Every argument is checked before the journal is opened, and the file appears only whole, so
    a refusal writes nothing. The report is written even when the chain is broken, marked so,
    and the exit status is then 1 (as ``audit verify``).
    """
    period = report_doc.parse_period(since, until)
    check_format(fmt, REPORT_FORMATS)
    if out_path is not None:
        check_new_file(out_path)
    elif fmt == "pdf":
        raise BadRequest("a PDF report needs --out FILE", code="output_required")
    now = clock or SystemClock()

    async def run(service: JournalService) -> int:
        window = await service.audit_window(period.since_us, period.until_us)
        site = NodeInfo(node.node_id, node.region, node.allowed_regions, service.store.url)
        doc = report_doc.build_report(
            window.rows,
            period,
            window.chain,
            site,
            generated_us=to_micros(now.now()),
            entries=window.entries,
        )
        text = json.dumps(doc, ensure_ascii=False, indent=2)
        if out_path is None:
            out(text)
        else:
            data = render_report_pdf(doc) if fmt == "pdf" else text.encode("utf-8") + b"\n"
            write_new_file(out_path, data)
            _report_written(doc, out_path, fmt, as_json, out)
        return 0 if window.chain.ok else 1

    return _with_service(run, data_dir, database_url, keyring_path, clock)


def _report_written(doc: dict[str, Any], path: Path, fmt: str, as_json: bool, out: Out) -> None:
    if as_json:
        chain, totals = doc["chain"], doc["totals"]
        summary = {
            "out": str(path),
            "format": fmt,
            "events": totals["events"],
            "clients": totals["clients"],
            "chain_ok": chain["ok"],
            "first_bad_seq": chain["first_bad_seq"],
        }
        out(_dumps(summary))
        return
    for line in report_doc.summary_lines(doc):
        out(line)
    out(f"written to {path} ({fmt})")


def journal_retention(
    data_dir: Path,
    *,
    dry_run: bool = False,
    retention_years: int = DEFAULT_RETENTION_YEARS,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    clock: Clock | None = None,
    as_json: bool = False,
    out: Out = print,
) -> int:
    """``fortrolig journal retention [--dry-run]``: erase (or list) journals past retention."""

    async def run(service: JournalService) -> int:
        report = await service.retention(dry_run=dry_run, actor="cli:retention")
        due = [
            {
                "client_id": c.client_id,
                "practitioner_id": c.practitioner_id,
                "last_activity": iso_from_micros(c.last_activity_us),
                "due": iso_from_micros(erase_after(c, retention_years)),
            }
            for c in report.due
        ]
        count = len(report.due) if dry_run else report.erased
        if as_json:
            doc = {
                "dry_run": dry_run,
                "retention_years": retention_years,
                "due": due,
                "erased": report.erased,
            }
            out(_dumps(doc))
            return 0
        verb = "would erase" if dry_run else "erased"
        for d in due:
            out(
                f"{verb} client {d['client_id']} of {d['practitioner_id']}: "
                f"last activity {d['last_activity']}, due {d['due']}"
            )
        out(f"{verb} {count} journal(s)")
        return 0

    return _with_service(run, data_dir, database_url, keyring_path, clock, retention_years)


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _with_service(
    run: Callable[[JournalService], Awaitable[int]],
    data_dir: Path,
    database_url: str | None,
    keyring_path: Path | None,
    clock: Clock | None = None,
    retention_years: int = DEFAULT_RETENTION_YEARS,
) -> int:
    async def main() -> int:
        service = await open_journal(
            data_dir,
            database_url=database_url,
            keyring_path=keyring_path,
            clock=clock,
            retention_years=retention_years,
            create=False,
        )
        try:
            return await run(service)
        finally:
            await service.close()

    return asyncio.run(main())

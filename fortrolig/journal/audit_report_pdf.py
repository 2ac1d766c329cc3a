"""The breach report (:mod:`fortrolig.journal.audit_report`) as a PDF, for the DPO and the
supervisory authority: the same document as the JSON, laid out as tables (fpdf2, DejaVu Sans
embedded when installed, as :mod:`fortrolig.journal.pdf` does).

The chain's state is the first thing on page 1, and in the PDF's subject and keywords
(``audit-chain-ok`` / ``audit-chain-broken``), so a broken chain cannot be missed or cropped off.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from fortrolig.journal.pdf import find_unicode_font

_LINE = 5.0
_EVENT_COLUMNS = (
    ("seq", 11),
    ("tid / at (UTC)", 38),
    ("aktør / actor", 32),
    ("handling / action", 28),
    ("klient / client", 46),
    ("notat / record", 46),
    ("formål / purpose", 26),
    ("detalje / detail", 28),
    ("verif.", 14),
)
_CLIENT_COLUMNS = (
    ("klient / client", 46),
    ("behandler / practitioners", 50),
    ("læst / reads", 18),
    ("eksp. / exports", 18),
    ("ændr. / changes", 18),
    ("notater / records", 18),
    ("første / first", 38),
    ("sidste / last", 38),
    ("slettet / erased", 19),
)


class _ReportPdf(FPDF):
    """A4 landscape with a page footer ``side n/N``."""

    text_family = "Helvetica"
    text_unicode = False

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.text_family, "", 7)
        self.cell(0, 5, f"Fortrolig audit report — side / page {self.page_no()}/{{nb}}", align="C")

    def setup(self, doc: dict[str, Any]) -> None:
        fonts = find_unicode_font()
        if fonts is not None:
            self.add_font("DejaVu", "", str(fonts[0]))
            self.add_font("DejaVu", "B", str(fonts[1]))
            self.text_family, self.text_unicode = "DejaVu", True
        period = doc["period"]
        ok = doc["chain"]["ok"]
        self.set_title(f"Fortrolig audit report {period['since']} .. {period['until']}")
        self.set_subject("audit chain OK" if ok else "audit chain BROKEN")
        self.set_keywords("audit-chain-ok" if ok else "audit-chain-broken")
        self.set_creator("Fortrolig")
        self.set_creation_date(datetime.fromisoformat(doc["generated_at"].replace("Z", "+00:00")))
        self.set_auto_page_break(auto=True, margin=15)

    def clean(self, value: object) -> str:
        text = "—" if value is None else str(value)
        if not self.text_unicode:
            text = text.replace("—", "-").encode("latin-1", "replace").decode("latin-1")
        return text

    def say(self, value: str, *, size: float = 9, bold: bool = False) -> None:
        self.set_font(self.text_family, "B" if bold else "", size)
        self.multi_cell(self.epw, _LINE, self.clean(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def grid(self, columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[object]]) -> None:
        self.set_font(self.text_family, "", 6.5)
        widths = tuple(w for _, w in columns)
        with self.table(col_widths=widths, line_height=3.6, text_align="LEFT") as table:
            heading = table.row()
            for name, _ in columns:
                heading.cell(self.clean(name))
            for values in rows:
                row = table.row()
                for value in values:
                    row.cell(self.clean(value))
        self.ln(3)


def _chain_banner(pdf: _ReportPdf, chain: dict[str, Any]) -> None:
    if chain["ok"]:
        pdf.set_text_color(0, 100, 0)
        pdf.say(
            f"Revisionskæden er intakt / audit chain OK: {chain['checked']} af / of "
            f"{chain['entries']} poster verificeret / entries verified",
            size=11,
            bold=True,
        )
    else:
        pdf.set_text_color(170, 0, 0)
        pdf.say(
            f"REVISIONSKÆDEN ER BRUDT / AUDIT CHAIN BROKEN at entry {chain['first_bad_seq']}: "
            f"{chain['problem']}. {chain['reported_unverified']} rapporterede hændelser kan ikke "
            "verificeres / reported events cannot be verified.",
            size=11,
            bold=True,
        )
    pdf.set_text_color(0, 0, 0)
    head = chain["head"]
    pdf.say(
        f"Hoved / head: seq {head['seq']} hash {head['hash']}" if head else "Hoved / head: —",
        size=7,
    )
    pdf.say(f"Omfang / scope: {chain['scope']}", size=7)


def _heading(pdf: _ReportPdf, doc: dict[str, Any]) -> None:
    node, totals = doc["node"], doc["totals"]
    pdf.say("Revisionsrapport / audit report (GDPR art. 33)", size=16, bold=True)
    _chain_banner(pdf, doc["chain"])
    pdf.ln(2)
    pdf.say(f"Periode / period: {doc['period']['since']} ≤ t < {doc['period']['until']}")
    pdf.say(f"Dannet / generated: {doc['generated_at']}")
    allowed = ", ".join(node["allowed_regions"]) or "—"
    pdf.say(f"Node: {node['id']}   region: {node['region']}   tilladte / allowed: {allowed}")
    pdf.say(f"Journal: {node['store']}")
    categories = ", ".join(f"{k} {v}" for k, v in totals["by_category"].items()) or "—"
    pdf.say(
        f"Hændelser / events {totals['events']}, klienter / clients {totals['clients']}, "
        f"notater / records {totals['records']}, aktører / actors {totals['actors']} "
        f"({categories})",
        bold=True,
    )
    pdf.ln(3)


def render_report_pdf(doc: dict[str, Any]) -> bytes:
    """Render a report document (:func:`~fortrolig.journal.audit_report.build_report`) as PDF."""
    pdf = _ReportPdf(orientation="L", format="A4")
    pdf.setup(doc)
    pdf.add_page()
    _heading(pdf, doc)
    pdf.say("Klienter / clients", size=11, bold=True)
    clients = [
        (
            c["client_id"],
            ", ".join(c["practitioners"]),
            c["reads"],
            c["exports"],
            c["changes"],
            len(c["records"]),
            c["first_at"],
            c["last_at"],
            "ja / yes" if c["erased"] else "nej / no",
        )
        for c in doc["clients"]
    ]
    if clients:
        pdf.grid(_CLIENT_COLUMNS, clients)
    else:
        pdf.say("(ingen / none)")
    pdf.say("Aktører / actors", size=11, bold=True)
    for a in doc["actors"]:
        actions = ", ".join(f"{k} {v}" for k, v in a["actions"].items())
        pdf.say(f"{a['actor']}: {a['events']} events, {a['clients']} clients ({actions})", size=8)
    if not doc["actors"]:
        pdf.say("(ingen / none)")
    pdf.ln(3)
    pdf.say("Hændelser / events", size=11, bold=True)
    events = [
        (
            e["seq"],
            e["at"],
            e["actor"],
            e["action"],
            e["client_id"],
            e["record_id"],
            e["purpose"],
            e["detail"],
            "ja / yes" if e["verified"] else "NEJ / NO",
        )
        for e in doc["events"]
    ]
    if events:
        pdf.grid(_EVENT_COLUMNS, events)
    else:
        pdf.say("(ingen / none)")
    return bytes(pdf.output())

"""A readable PDF of one journal (fpdf2): client, every note with its addenda, dates, authors.

Times are the practice's local time with the zone named (``invites.time_zone``); authors are the
practitioners' display names (their ids beside, as the JSON export keeps them).

fpdf2's built-in core fonts only cover Latin-1, which holds æ, ø and å but not every name a client
may have, so DejaVu Sans (Debian package ``fonts-dejavu-core``) is embedded when installed; without
it the core font is used and characters outside Latin-1 are replaced by ``?``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from fortrolig.journal.model import MICROS, Journal, Note

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
_LINE = 5.5


DEFAULT_ZONE = ZoneInfo("Europe/Copenhagen")


class _Stamps:
    """Local time with the zone named, and authors by name."""

    def __init__(self, zone: ZoneInfo, names: Mapping[str, str]) -> None:
        self.zone, self.names = zone, names

    def at(self, micros: int) -> str:
        t = datetime.fromtimestamp(micros / MICROS, UTC).astimezone(self.zone)
        return f"{t:%Y-%m-%d %H:%M} {t.tzname() or self.zone.key}"

    def who(self, author: str) -> str:
        name = self.names.get(author)
        return f"{name} ({author})" if name else author


def find_unicode_font() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold, if installed."""
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class _JournalPdf:
    def __init__(self, title: str, created: datetime) -> None:
        self.pdf = FPDF(format="A4")
        self.pdf.set_title(title)
        self.pdf.set_creator("Fortrolig")
        self.pdf.set_creation_date(created)
        self.pdf.set_auto_page_break(auto=True, margin=15)
        fonts = find_unicode_font()
        if fonts is not None:
            self.pdf.add_font("DejaVu", "", str(fonts[0]))
            self.pdf.add_font("DejaVu", "B", str(fonts[1]))
            self.family, self.unicode = "DejaVu", True
        else:
            self.family, self.unicode = "Helvetica", False

    def text(self, value: str, *, size: float = 10, bold: bool = False, indent: float = 0) -> None:
        if not self.unicode:
            value = value.encode("latin-1", "replace").decode("latin-1")
        self.pdf.set_font(self.family, "B" if bold else "", size)
        self.pdf.set_x(self.pdf.l_margin + indent)
        width = self.pdf.epw - indent
        self.pdf.multi_cell(width, _LINE, value, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def gap(self, height: float = 3) -> None:
        self.pdf.ln(height)


def render_pdf(
    journal: Journal,
    exported_us: int,
    zone: ZoneInfo = DEFAULT_ZONE,
    names: Mapping[str, str] | None = None,
) -> bytes:
    """Render ``journal`` as PDF bytes: times in ``zone``, authors by ``names`` (id → name)."""
    stamps = _Stamps(zone, names or {})
    client = journal.client
    exported = datetime.fromtimestamp(exported_us / MICROS, UTC)
    doc = _JournalPdf(f"Journal: {client.name}", exported)
    doc.pdf.add_page()
    doc.text("Journal", size=18, bold=True)
    doc.text(f"Klient / client: {client.name}", size=12, bold=True)
    if client.contact:
        doc.text(f"Kontakt / contact: {client.contact}")
    doc.text(f"Klient-id: {client.id}   Oprettet / created: {stamps.at(client.created_us)}")
    doc.text(
        f"Udskrevet / exported: {stamps.at(exported_us)}   Notater / notes: {len(journal.notes)}"
    )
    authors = sorted({stamps.who(n.author) for n in journal.notes})
    if authors:
        doc.text(f"Behandler / practitioner: {', '.join(authors)}")
    doc.gap(6)
    by_id = {n.id: n for n in journal.notes}
    for note in journal.notes:
        _render_note(doc, stamps, note, by_id, journal.addenda_of(note.id))
    if not journal.notes:
        doc.text("(ingen notater / no notes)")
    return bytes(doc.pdf.output())


def _render_note(
    doc: _JournalPdf,
    stamps: _Stamps,
    note: Note,
    by_id: dict[str, Note],
    addenda: tuple[Note, ...],
) -> None:
    kind = "Tilføjelse / addendum" if note.is_addendum else "Notat / note"
    doc.text(
        f"{kind} — {stamps.at(note.created_us)} — {stamps.who(note.author)}", size=11, bold=True
    )
    details = [f"id {note.id}"]
    if note.consultation_id:
        details.append(f"konsultation / consultation {note.consultation_id}")
    if note.corrects:
        target = by_id.get(note.corrects)
        when = stamps.at(target.created_us) if target else "?"
        details.append(f"retter / corrects {note.corrects} ({when})")
    doc.text(", ".join(details), size=8)
    doc.text(note.text, indent=4)
    for addendum in addenda:
        doc.text(
            f"→ rettet ved tilføjelse / corrected by addendum {addendum.id} "
            f"({stamps.at(addendum.created_us)})",
            size=8,
            indent=4,
        )
    doc.gap(4)

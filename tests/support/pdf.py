"""A small structural check of PDF files (no PDF library in the test environment)."""

from __future__ import annotations

import re


def page_count(pdf: bytes) -> int:
    """Check ``pdf`` is a whole PDF and return its page count.

    A whole file starts ``%PDF-`` and ends ``%%EOF``; ``startxref`` points at its cross-reference
    table, and every indirect object the table lists starts where it says. The page count is
    the page tree's ``/Count``, which must equal the number of page objects.
    """
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    xref_at = int(re.findall(rb"startxref\s+(\d+)", pdf)[-1])
    assert pdf[xref_at:].startswith(b"xref")
    offsets = re.findall(rb"^(\d{10}) \d{5} n", pdf[xref_at:], re.MULTILINE)
    for number, offset in enumerate(offsets, start=1):
        assert pdf[int(offset) :].startswith(f"{number} 0 obj".encode()), number
    objects = pdf.split(b"endobj")
    trees = [o for o in objects if re.search(rb"/Type /Pages\b", o)]
    pages = [o for o in objects if re.search(rb"/Type /Page\b", o)]
    counts = {int(n) for tree in trees for n in re.findall(rb"/Count (\d+)", tree)}
    assert len(counts) == 1 and counts == {len(pages)}, (counts, len(pages))
    return len(pages)

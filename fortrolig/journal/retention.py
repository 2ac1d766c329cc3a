"""Pure retention rule: a journal is due for erasure N years after its latest note."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fortrolig.journal.model import MICROS, RetentionCandidate

DEFAULT_RETENTION_YEARS = 5
"""Danish journal rules: keep at least five years after the latest entry."""


def add_years(micros: int, years: int) -> int:
    """Add calendar years; 29 February moves to 1 March in a non-leap target year."""
    whole, frac = divmod(micros, MICROS)
    start = datetime.fromtimestamp(whole, UTC)
    try:
        moved = start.replace(year=start.year + years)
    except ValueError:
        moved = start.replace(year=start.year + years, month=3, day=1)
    return int(moved.timestamp()) * MICROS + frac


def erase_after(candidate: RetentionCandidate, years: int) -> int:
    """The instant (microseconds) from which ``candidate`` may be erased."""
    return add_years(candidate.last_activity_us, years)


def due_for_erasure(
    candidates: Iterable[RetentionCandidate], now_us: int, years: int = DEFAULT_RETENTION_YEARS
) -> list[RetentionCandidate]:
    """Candidates whose retention period has passed and that are not on hold, oldest first."""
    if years < 1:
        raise ValueError("retention must be at least one year")
    due = [c for c in candidates if not c.hold and erase_after(c, years) <= now_us]
    return sorted(due, key=lambda c: (c.last_activity_us, c.client_id))

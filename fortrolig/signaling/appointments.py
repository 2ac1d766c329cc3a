"""A consultation as an appointment: when it is, what state it is in, and how that is written
for people (the practice's local time with its zone named) and calendars (an .ics event). Pure.

Times are unix seconds everywhere inside; only what a person reads is local. The practice's time
zone is ``invites.time_zone`` (IANA name, default ``Europe/Copenhagen``).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fortrolig.core.errors import BadRequest, ConfigError

SCHEDULE_PAST_S = 86_400
"""How far in the past an appointment may be set (a consultation entered after the fact)."""
SCHEDULE_AHEAD_S = 400 * 86_400
"""How far ahead an appointment may be set."""
DURATION_S = 50 * 60
"""The calendar entry's length: the usual therapy hour."""
JOURNAL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_DA_DAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")
_DA_MONTHS = (
    "januar", "februar", "marts", "april", "maj", "juni", "juli", "august", "september",
    "oktober", "november", "december",
)  # fmt: skip


class ConsultationState(enum.StrEnum):
    """Where a consultation is: booked, a client waiting, people in the room, or over."""

    SCHEDULED = "scheduled"
    WAITING = "waiting"
    IN_SESSION = "in_session"
    ENDED = "ended"


def state_of(*, closed: bool, joined: int, waiting: int) -> ConsultationState:
    """The state from its room: ended when the room is closed, in session while anyone is in
    it, waiting while a client waits to be admitted, scheduled otherwise."""
    if closed:
        return ConsultationState.ENDED
    if joined:
        return ConsultationState.IN_SESSION
    if waiting:
        return ConsultationState.WAITING
    return ConsultationState.SCHEDULED


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; a ``ConfigError`` naming ``invites.time_zone`` otherwise."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"invites.time_zone: unknown time zone {name!r}") from None


def parse_scheduled_at(data: Mapping[str, Any], now: float) -> float | None:
    """``scheduled_at`` (unix seconds, at most a day past and 400 days ahead) or None."""
    value = data.get("scheduled_at")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest("scheduled_at must be unix seconds", code="bad_time")
    if not now - SCHEDULE_PAST_S <= value <= now + SCHEDULE_AHEAD_S:
        raise BadRequest(
            "scheduled_at must be between a day ago and 400 days ahead", code="bad_time"
        )
    return float(value)


def parse_journal_client(data: Mapping[str, Any]) -> str | None:
    """``journal_client_id``: the id of the practitioner's journal client, or None."""
    value = data.get("journal_client_id")
    if value is None:
        return None
    if not isinstance(value, str) or not JOURNAL_ID_RE.match(value):
        raise BadRequest("journal_client_id is not a journal client id", code="bad_field")
    return value


def local(ts: float, zone: ZoneInfo) -> datetime:
    """``ts`` as an aware datetime in ``zone``."""
    return datetime.fromtimestamp(ts, UTC).astimezone(zone)


def human_time(ts: float, zone: ZoneInfo, lang: str) -> str:
    """What a person reads: "tirsdag 8. december 2026 kl. 14:00 (CET)" or
    "Tuesday 8 December 2026, 14:00 (CET)"; the zone's abbreviation as it is on that day."""
    t = local(ts, zone)
    abbr = t.tzname() or zone.key
    if lang == "da":
        day, month = _DA_DAYS[t.weekday()], _DA_MONTHS[t.month - 1]
        return f"{day} {t.day}. {month} {t.year} kl. {t:%H:%M} ({abbr})"
    return f"{t:%A} {t.day} {t:%B %Y}, {t:%H:%M} ({abbr})"


def _ics_text(text: str) -> str:
    """RFC 5545 TEXT escaping."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """RFC 5545 line folding at 75 octets (continuations start with a space)."""
    out: list[str] = []
    raw = line.encode("utf-8")
    while len(raw) > 75:
        cut = 75 if not out else 74
        while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        out.append(raw[:cut].decode("utf-8"))
        raw = raw[cut:]
    out.append(raw.decode("utf-8"))
    return [out[0]] + [" " + x for x in out[1:]]


def ics_event(
    *,
    uid: str,
    start: float,
    now: float,
    summary: str,
    description: str,
    url: str,
    duration_s: int = DURATION_S,
) -> bytes:
    """A one-event iCalendar (``METHOD:PUBLISH``; times in UTC, so every calendar shows its own
    local time). The URL is the invite link; the description says how to join."""

    def utc(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")

    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Fortrolig//Consultation//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{utc(now)}",
        f"DTSTART:{utc(start)}",
        f"DTEND:{utc(start + duration_s)}",
        f"SUMMARY:{_ics_text(summary)}",
        f"DESCRIPTION:{_ics_text(description)}",
        f"URL:{url}",
        "CLASS:PRIVATE",
        "TRANSP:OPAQUE",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        f"DESCRIPTION:{_ics_text(summary)}",
        f"TRIGGER:-PT{int(timedelta(minutes=15).total_seconds() // 60)}M",
        "END:VALARM",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    folded = [part for line in lines for part in _fold(line)]
    return ("\r\n".join(folded) + "\r\n").encode("utf-8")

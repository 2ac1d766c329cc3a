"""The breach report over a period of the audit log (pure): who read, exported or changed what.

GDPR art. 33 gives a controller 72 hours to tell the supervisory authority which categories and
how many data subjects and records a breach concerns. ``fortrolig audit report`` answers that
from the hash-chained audit log: :func:`build_report` takes the audit rows of a period and the
chain's verification and returns the JSON document below; ``audit_report_pdf`` renders the same
document. Nothing here reads a key, a note or a name: the report holds what the audit rows hold
in clear (pseudonymous client ids, note ids, actors, actions, purposes from the fixed list), and
a hold's free-text reason, sealed in its entry, is reported only as ``"sealed"`` (docs/security.md,
"Breach report procedure", says why it is not opened).

Document ``fortrolig.audit_report`` version 1 (docs/journal.md)::

    {"format": "fortrolig.audit_report", "version": 1, "generated_at": ISO,
     "period": {"since": ISO, "until": ISO},          # since <= at < until
     "node": {"id", "region", "allowed_regions": [...], "store"},
     "chain": {"ok", "scope", "entries", "checked", "first_bad_seq", "problem",
               "head": {"seq", "hash"} | null, "reported_unverified"},
     "totals": {"events", "clients", "records", "actors", "by_category": {...},
                "by_action": {...}},
     "clients": [{"client_id", "practitioners", "events", "reads", "exports", "changes",
                  "first_at", "last_at", "records", "actions", "purposes", "created",
                  "erased"}, ...],                       # by client id
     "actors": [{"actor", "events", "clients", "actions"}, ...],  # by actor
     "events": [{"seq", "at", "actor", "action", "category", "client_id", "purpose",
                 "record_id", "detail", "verified"}, ...]}       # by seq

Times are ISO 8601 UTC with microseconds. ``verified`` is false for every reported row at or
after the first broken link: its content cannot be vouched for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fortrolig.journal import audit
from fortrolig.journal.audit import VerifyReport
from fortrolig.journal.errors import InvalidReportPeriod
from fortrolig.journal.model import AuditRow, iso_from_micros, micros_from_iso

FORMAT = "fortrolig.audit_report"
VERSION = 1

READ, EXPORT, CHANGE, OPERATOR, OTHER = "read", "export", "change", "operator", "other"
CATEGORIES: dict[str, str] = {
    audit.CLIENT_LIST: READ,  # opens every client's name
    audit.JOURNAL_READ: READ,
    audit.HOLD_READ: READ,
    audit.EXPORT_JSON: EXPORT,
    audit.EXPORT_PDF: EXPORT,
    audit.EXPORT_ALL: EXPORT,
    audit.CLIENT_CREATE: CHANGE,
    audit.NOTE_APPEND: CHANGE,
    audit.ADDENDUM_APPEND: CHANGE,
    audit.IMPORT_JSON: CHANGE,
    audit.HOLD_SET: CHANGE,
    audit.JOURNAL_ERASE: CHANGE,
    audit.KEYS_ROTATE: OPERATOR,
}
"""What each audited action did to personal data; an action not listed is ``other``."""

_RECORD_ACTIONS = frozenset({audit.NOTE_APPEND, audit.ADDENDUM_APPEND, audit.IMPORT_JSON})
"""Actions whose detail is the id of the note written."""
_PLAIN_DETAIL_ACTIONS = frozenset({audit.KEYS_ROTATE, audit.JOURNAL_ERASE})
"""Actions whose detail the service writes itself from numbers (never typed text)."""


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open period ``since_us <= at < until_us`` (microseconds, UTC)."""

    since_us: int
    until_us: int

    def __contains__(self, at_us: object) -> bool:
        return isinstance(at_us, int) and self.since_us <= at_us < self.until_us


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Where the report was made: the node's id, region, allowed regions and journal store."""

    node_id: str
    region: str
    allowed_regions: tuple[str, ...]
    store: str


def parse_time(text: str, what: str) -> int:
    """An ISO 8601 time with a UTC offset (``Z`` or ``+01:00``), or a date (midnight UTC)."""
    value = text.strip() if isinstance(text, str) else ""
    try:
        if len(value) == 10:  # YYYY-MM-DD: a whole day, read as UTC
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return micros_from_iso(day.isoformat())
        return micros_from_iso(value)
    except ValueError:
        pass
    raise InvalidReportPeriod(
        f"{what} {text!r} is not an ISO 8601 time with a UTC offset "
        "(e.g. 2026-12-01T00:00:00Z) or a date (2026-12-01)"
    )


def parse_period(since: str, until: str) -> Period:
    """The period of ``--since``/``--until``; :class:`InvalidReportPeriod` unless since < until."""
    period = Period(parse_time(since, "--since"), parse_time(until, "--until"))
    if period.since_us >= period.until_us:
        raise InvalidReportPeriod(f"--since {since} must be before --until {until}")
    return period


def category(action: str) -> str:
    """The category of an audited action (read, export, change, operator or other)."""
    return CATEGORIES.get(action, OTHER)


def event_doc(row: AuditRow, verified: bool) -> dict[str, Any]:
    """One audit row as a report event (no sealed text, no free text)."""
    e = row.event
    record_id = e.detail if e.action in _RECORD_ACTIONS and e.detail else None
    return {
        "seq": row.seq,
        "at": iso_from_micros(e.at_us),
        "actor": e.actor,
        "action": e.action,
        "category": category(e.action),
        "client_id": e.client_id,
        "purpose": e.purpose,
        "record_id": record_id,
        "detail": _detail(e.action, e.detail),
        "verified": verified,
    }


def _detail(action: str, detail: str) -> str | None:
    if action == audit.HOLD_SET:
        return _hold_detail(detail)
    if action in _PLAIN_DETAIL_ACTIONS and detail:
        return detail
    return None


def _hold_detail(detail: str) -> str:
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):  # written before reasons were sealed: "True"/"False"
        return "hold on" if detail == "True" else "hold off"
    state = "hold on" if parsed.get("hold") else "hold off"
    return f"{state}, reason sealed" if "reason" in parsed else state


def chain_doc(
    chain: VerifyReport, entries: int, events: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The chain's verification as the report states it."""
    head = {"seq": chain.head[0], "hash": chain.head[1]} if chain.head else None
    return {
        "ok": chain.ok,
        "scope": "every entry from the first to the newest (the reported ones link through them)",
        "entries": entries,
        "checked": chain.checked,
        "first_bad_seq": chain.first_bad_seq,
        "problem": chain.problem or None,
        "head": head,
        "reported_unverified": sum(1 for e in events if not e["verified"]),
    }


def _client_summary(client_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    cats = Counter(e["category"] for e in events)
    actions = Counter(e["action"] for e in events)
    return {
        "client_id": client_id,
        "practitioners": sorted({e["actor"] for e in events}),
        "events": len(events),
        "reads": cats[READ],
        "exports": cats[EXPORT],
        "changes": cats[CHANGE],
        "first_at": events[0]["at"],
        "last_at": events[-1]["at"],
        "records": sorted({e["record_id"] for e in events if e["record_id"]}),
        "actions": dict(sorted(actions.items())),
        "purposes": dict(sorted(Counter(e["purpose"] for e in events).items())),
        "created": actions[audit.CLIENT_CREATE] + actions[audit.IMPORT_JSON] > 0,
        "erased": actions[audit.JOURNAL_ERASE] > 0,
    }


def _actor_summary(actor: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "actor": actor,
        "events": len(events),
        "clients": len({e["client_id"] for e in events if e["client_id"]}),
        "actions": dict(sorted(Counter(e["action"] for e in events).items())),
    }


def _grouped(events: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event[key] is not None:
            groups.setdefault(event[key], []).append(event)
    return dict(sorted(groups.items()))


def build_report(
    rows: Iterable[AuditRow],
    period: Period,
    chain: VerifyReport,
    node: NodeInfo,
    *,
    generated_us: int,
    entries: int,
) -> dict[str, Any]:
    """The report document over the rows of ``period`` (other rows are left out).

    ``chain`` is the verification of the whole log (``entries`` rows read); a row at or after
    its first bad entry is reported with ``verified: false``.
    """
    bad = chain.first_bad_seq
    chosen = sorted((r for r in rows if r.event.at_us in period), key=lambda r: r.seq)
    events = [event_doc(r, bad is None or r.seq < bad) for r in chosen]
    clients = _grouped(events, "client_id")
    actors = _grouped(events, "actor")
    return {
        "format": FORMAT,
        "version": VERSION,
        "generated_at": iso_from_micros(generated_us),
        "period": {
            "since": iso_from_micros(period.since_us),
            "until": iso_from_micros(period.until_us),
        },
        "node": {
            "id": node.node_id,
            "region": node.region,
            "allowed_regions": list(node.allowed_regions),
            "store": node.store,
        },
        "chain": chain_doc(chain, entries, events),
        "totals": {
            "events": len(events),
            "clients": len(clients),
            "records": len({e["record_id"] for e in events if e["record_id"]}),
            "actors": len(actors),
            "by_category": dict(sorted(Counter(e["category"] for e in events).items())),
            "by_action": dict(sorted(Counter(e["action"] for e in events).items())),
        },
        "clients": [_client_summary(cid, evs) for cid, evs in clients.items()],
        "actors": [_actor_summary(actor, evs) for actor, evs in actors.items()],
        "events": events,
    }


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: period, counts and the chain's state."""
    t, chain = doc["totals"], doc["chain"]
    lines = [
        f"audit report {doc['period']['since']} .. {doc['period']['until']} "
        f"(node {doc['node']['id']}, region {doc['node']['region']})",
        f"{t['events']} events, {t['clients']} clients, {t['records']} records, "
        f"{t['actors']} actors",
    ]
    if chain["ok"]:
        lines.append(f"audit chain OK: {chain['checked']} entries verified")
    else:
        lines.append(
            f"audit chain BROKEN at entry {chain['first_bad_seq']}: {chain['problem']}; "
            f"{chain['reported_unverified']} reported events unverified"
        )
    return lines

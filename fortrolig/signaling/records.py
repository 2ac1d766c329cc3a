"""Durable room records: what outlives a node (pure; stores implement :class:`RoomStore`).

A :class:`~fortrolig.signaling.rooms.Room` is the live state of a room on the node that serves
it (who is connected, who waits). Its :class:`RoomRecord` is what any node needs to serve it
after a restart or a move: owner, size, waiting room, the regions it may be served from, and who
was admitted or turned away (so an admitted client does not wait again after a failover, and a
denied one cannot come back through another node).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

from fortrolig.core.config_rules import is_eu_region
from fortrolig.core.errors import BadRequest, Forbidden

ADMITTED = "admitted"
DENIED = "denied"


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """A room as stored: ``closed_at`` is set once it ended (it never reopens).

    ``force_relay`` makes every participant's browser use TURN relay candidates only
    (``iceTransportPolicy: "relay"``): no participant learns another's or the node's host
    address from its own ICE candidates, and a client on a network that blocks UDP still gets
    through (TURN over TLS on 443).
    """

    id: str
    owner: str
    max_participants: int
    has_waiting_room: bool  # clients wait to be admitted (the API's `waiting_room` field)
    created_at: float
    regions: tuple[str, ...]
    closed_at: float | None = None
    force_relay: bool = False

    @property
    def closed(self) -> bool:
        """Whether the room has ended."""
        return self.closed_at is not None


def check_room_owner(owner: str, subject: str) -> None:
    """Only the practitioner who created the room may manage it (``not_room_owner``)."""
    if subject != owner:
        raise Forbidden("not your room", code="not_room_owner")


MAX_REGIONS = 8


def parse_regions(value: object) -> tuple[str, ...] | None:
    """A request's ``regions`` (None: the default); each must be an EU/EEA region tag."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_REGIONS
        or not all(is_eu_region(tag) for tag in value)
    ):
        raise BadRequest(
            f"regions must be a list of 1 to {MAX_REGIONS} EU/EEA region tags (e.g. eu-north)",
            code="bad_region",
        )
    return tuple(dict.fromkeys(value))


def parse_force_relay(value: object) -> bool:
    """A request's ``force_relay`` (absent: False); anything but a boolean is ``bad_field``."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest("force_relay must be a boolean", code="bad_field")
    return value


@dataclass(frozen=True, slots=True)
class Members:
    """Who a room's practitioner admitted and who was turned away."""

    admitted: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()


class RoomStore(Protocol):
    """Where room records live. Adding a member is idempotent; closing is once."""

    async def add_room(self, room: RoomRecord) -> None: ...

    async def room(self, room_id: str) -> RoomRecord | None: ...

    async def close_room(self, room_id: str, at: float) -> bool:
        """Mark the room ended; False if it already was (or never existed)."""
        ...

    async def open_rooms_of(self, owner: str, *, include_closed: bool = False) -> list[RoomRecord]:
        """The owner's open rooms (and its ended ones too with ``include_closed``), oldest first."""
        ...

    async def ended_among(self, room_ids: list[str]) -> set[str]:
        """Which of ``room_ids`` have ended or are unknown (one query for a node's live rooms)."""
        ...

    async def set_member(self, room_id: str, participant_id: str, state: str) -> None:
        """Record ``participant_id`` as ``admitted`` or ``denied`` (denied wins)."""
        ...

    async def members(self, room_id: str) -> Members: ...


@dataclass
class MemoryRoomStore:
    """An in-process :class:`RoomStore` (unit tests; a node uses the database's)."""

    rooms: dict[str, RoomRecord] = field(default_factory=dict)
    member_states: dict[str, dict[str, str]] = field(default_factory=dict)

    async def add_room(self, room: RoomRecord) -> None:
        self.rooms[room.id] = room

    async def room(self, room_id: str) -> RoomRecord | None:
        return self.rooms.get(room_id)

    async def close_room(self, room_id: str, at: float) -> bool:
        found = self.rooms.get(room_id)
        if found is None or found.closed:
            return False
        self.rooms[room_id] = dataclasses.replace(found, closed_at=at)
        return True

    async def open_rooms_of(self, owner: str, *, include_closed: bool = False) -> list[RoomRecord]:
        return [
            r for r in self.rooms.values() if r.owner == owner and (include_closed or not r.closed)
        ]

    async def ended_among(self, room_ids: list[str]) -> set[str]:
        return {r for r in room_ids if r not in self.rooms or self.rooms[r].closed}

    async def set_member(self, room_id: str, participant_id: str, state: str) -> None:
        states = self.member_states.setdefault(room_id, {})
        if states.get(participant_id) != DENIED:
            states[participant_id] = state

    async def members(self, room_id: str) -> Members:
        states = self.member_states.get(room_id, {})
        return Members(
            admitted=frozenset(p for p, s in states.items() if s == ADMITTED),
            denied=frozenset(p for p, s in states.items() if s == DENIED),
        )

"""Rooms and their participants: pure domain rules (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fortrolig.core.errors import BadRequest, Conflict, Forbidden, NotFound
from fortrolig.core.ids import new_id


@dataclass
class Participant:
    """Someone in a room: a practitioner or a client."""

    id: str
    role: str
    name: str | None = None
    audio: bool = True
    video: bool = True


@dataclass
class Room:
    """A consultation room owned by one practitioner, with a participant limit."""

    id: str
    owner: str
    max_participants: int
    created_at: float
    closed: bool = False
    participants: dict[str, Participant] = field(default_factory=dict)

    def admit(self, participant: Participant) -> None:
        """Add ``participant``; refuses when the room is closed or full."""
        if self.closed:
            raise Conflict("the room has ended", code="room_closed")
        if participant.id in self.participants:
            raise Conflict("already in the room", code="already_joined")
        if len(self.participants) >= self.max_participants:
            raise Conflict("the room is full", code="room_full")
        self.participants[participant.id] = participant

    def remove(self, participant_id: str) -> Participant | None:
        """Remove a participant; None if it was not there."""
        return self.participants.pop(participant_id, None)

    def others(self, participant_id: str) -> list[Participant]:
        """Everyone in the room except ``participant_id``."""
        return [p for pid, p in self.participants.items() if pid != participant_id]

    def check_owner(self, subject: str) -> None:
        """Only the practitioner who created the room may manage it."""
        if subject != self.owner:
            raise Forbidden("not your room", code="not_room_owner")


class RoomRegistry:
    """The rooms of this node."""

    def __init__(self, default_max: int, limit: int) -> None:
        self._rooms: dict[str, Room] = {}
        self._default_max = default_max
        self._limit = limit

    def create(self, owner: str, now: float, max_participants: int | None = None) -> Room:
        """A new open room owned by practitioner ``owner``."""
        size = self._default_max if max_participants is None else max_participants
        if not 2 <= size <= self._limit:
            raise BadRequest(
                f"max_participants must be between 2 and {self._limit}", code="bad_room_size"
            )
        room = Room(new_id("room"), owner, size, now)
        self._rooms[room.id] = room
        return room

    def get(self, room_id: str) -> Room:
        """The open room ``room_id``."""
        room = self._rooms.get(room_id)
        if room is None or room.closed:
            raise NotFound("no such room", code="room_not_found")
        return room

    def close(self, room_id: str) -> Room:
        """Mark a room ended and forget it."""
        room = self.get(room_id)
        room.closed = True
        del self._rooms[room_id]
        return room

    def __len__(self) -> int:
        return len(self._rooms)

    def participant_count(self) -> int:
        """Participants over every room."""
        return sum(len(r.participants) for r in self._rooms.values())


class TokenBucket:
    """A token-bucket rate limiter on an injected monotonic clock (seconds)."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available."""
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

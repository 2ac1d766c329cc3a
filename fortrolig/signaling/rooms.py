"""Rooms and their participants: pure domain rules (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fortrolig.core.errors import BadRequest, Conflict, Forbidden, NotFound

if TYPE_CHECKING:
    from .recording_consent import RecordingConsent

WAITING_MAX = 16
"""Clients that may wait in one room at a time (a consultation has one or a few)."""


@dataclass
class Participant:
    """Someone in a room: a practitioner or a client."""

    id: str
    role: str
    name: str | None = None
    audio: bool = True
    video: bool = True
    audio_blocked: bool = False  # the browser refused the microphone
    video_blocked: bool = False  # the browser refused the camera
    screen: bool = False  # sharing a screen (its second video track)
    quality: str = "unknown"  # its connection quality as its page reports it
    audio_only: bool = False  # its video paused: its network is too poor for video
    # How the client was verified (None: a direct link, not an invite) and the verified e-mail,
    # name or pseudonym; shown to practitioners in the waiting room.
    verification: str | None = None
    verified: str | None = None
    returning: bool = False  # came in again through an invite it had used before
    # Set while the participant's connection is gone and its place is held (monotonic deadline).
    away_until: float | None = None


@dataclass
class Room:
    """A consultation room owned by one practitioner, with a participant limit.

    With ``has_waiting_room``, a client's ``join`` puts it in ``waiting`` (arrival order) until a
    practitioner admits it (its id is then remembered in ``admitted``, so that a reconnect goes
    straight back in) or denies it (remembered in ``denied``: it cannot wait again).
    Practitioners always join directly.

    A participant whose connection drops (a reload, a crash, a network change) is held in
    ``away`` until a deadline: its place counts against the limit and everyone sees it as away,
    but it is not present (no media, not counted as a practitioner for a recording). Coming back
    with its resume token before the deadline puts it straight back in; after it, it has left.
    """

    id: str
    owner: str
    max_participants: int
    created_at: float
    closed: bool = False
    participants: dict[str, Participant] = field(default_factory=dict)
    has_waiting_room: bool = False
    waiting: dict[str, Participant] = field(default_factory=dict)
    admitted: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    away: dict[str, Participant] = field(default_factory=dict)
    # The recording asked for or running (recording_consent.py); lives with the live room only:
    # a node that loses the room loses the recording's process too (its files are recovered).
    recording: RecordingConsent | None = None
    # Who may share a screen: "everyone" or "practitioners" (a practitioner's choice in the
    # call; lives with the live room like the mute state).
    screen_share: str = "everyone"

    def admit(self, participant: Participant) -> None:
        """Add ``participant``; refuses when the room is closed or full."""
        self.check_can_enter(participant.id)
        self.participants[participant.id] = participant

    def check_can_enter(self, participant_id: str) -> None:
        """Raise the error :meth:`admit` would raise for ``participant_id``, changing nothing."""
        if self.closed:
            raise Conflict("the room has ended", code="room_closed")
        if participant_id in self.denied:  # removed by a practitioner (or turned away)
            raise Forbidden("a practitioner removed you from this room", code="denied")
        if participant_id in self.participants:
            raise Conflict("already in the room", code="already_joined")
        if self.occupied(participant_id) >= self.max_participants:
            raise Conflict("the room is full", code="room_full")

    def occupied(self, participant_id: str | None = None) -> int:
        """Places taken: those present and those held for someone away (except
        ``participant_id``'s own held place, which is theirs to take back)."""
        held = len(self.away) - (1 if participant_id in self.away else 0)
        return len(self.participants) + held

    def must_wait(self, participant: Participant) -> bool:
        """Whether this participant's ``join`` goes to the waiting room rather than in."""
        return (
            self.has_waiting_room
            and participant.role == "client"
            and participant.id not in self.admitted
        )

    def enqueue(self, participant: Participant) -> None:
        """Put a client in the waiting room; refuses when closed, denied or too many wait."""
        if self.closed:
            raise Conflict("the room has ended", code="room_closed")
        if participant.id in self.denied:
            raise Forbidden("the practitioner did not admit you", code="denied")
        if participant.id in self.waiting or participant.id in self.participants:
            raise Conflict("already waiting", code="already_joined")
        if len(self.waiting) >= WAITING_MAX:
            raise Conflict("too many clients are waiting", code="waiting_room_full")
        self.waiting[participant.id] = participant

    def waiting_client(self, participant_id: str) -> Participant:
        """The waiting client ``participant_id``; ``not_waiting`` if nobody by that id waits."""
        found = self.waiting.get(participant_id)
        if found is None:
            raise NotFound("no such client in the waiting room", code="not_waiting")
        return found

    def check_let_in(self, participant_id: str) -> Participant:
        """The waiting client :meth:`let_in` would admit, or the error it would raise."""
        client = self.waiting_client(participant_id)
        if self.occupied(participant_id) >= self.max_participants:
            # Not `room_full`, which ends the connection of whoever joins a full room.
            raise Conflict("the room is full; the client keeps waiting", code="room_at_capacity")
        self.check_can_enter(participant_id)
        return client

    def let_in(self, participant_id: str) -> Participant:
        """Move a waiting client into the room (capacity checked first: nothing changes if full)."""
        client = self.check_let_in(participant_id)
        del self.waiting[participant_id]
        self.admitted.add(participant_id)
        self.participants[participant_id] = client
        return client

    def expel(self, participant_id: str) -> Participant:
        """Mark a participant in the room removed: it may not enter or wait again (its session
        leaves the room)."""
        found = self.participants.get(participant_id) or self.away.get(participant_id)
        if found is None:
            raise NotFound("no such participant in the room", code="not_in_room")
        self.admitted.discard(participant_id)
        self.denied.add(participant_id)
        return found

    def turn_away(self, participant_id: str) -> Participant:
        """Mark a waiting client denied: it may not wait again (its session removes it)."""
        client = self.waiting_client(participant_id)
        self.denied.add(participant_id)
        return client

    def remove(self, participant_id: str) -> Participant | None:
        """Remove a participant; None if it was not there."""
        return self.participants.pop(participant_id, None)

    def hold(self, participant_id: str, until: float) -> Participant | None:
        """Move a present participant whose connection dropped to ``away`` until ``until``."""
        found = self.participants.pop(participant_id, None)
        if found is not None:
            found.away_until = until
            found.screen = False  # its media is freed: a share does not outlive the connection
            found.quality, found.audio_only = "unknown", False  # measured afresh when it returns
            self.away[participant_id] = found
        return found

    def come_back(self, participant_id: str) -> Participant | None:
        """Release ``participant_id``'s held place for it to enter again; None if not away."""
        found = self.away.pop(participant_id, None)
        if found is not None:
            found.away_until = None
        return found

    def expire_away(self, now: float) -> list[Participant]:
        """Forget everyone whose held place ran out by ``now`` (they have left)."""
        gone = [x for x in self.away.values() if x.away_until is not None and x.away_until <= now]
        for x in gone:
            del self.away[x.id]
        return gone

    def oldest_away_client(self) -> Participant | None:
        """The client held longest (the first to give its place up when one is needed)."""
        clients = [x for x in self.away.values() if x.role == "client"]
        return min(clients, key=lambda x: x.away_until or 0.0, default=None)

    def roster(self, participant_id: str) -> list[Participant]:
        """What ``participant_id`` is told is in the room: the others present and those away."""
        return self.others(participant_id) + [
            x for pid, x in self.away.items() if pid != participant_id
        ]

    def others(self, participant_id: str) -> list[Participant]:
        """Everyone in the room except ``participant_id``."""
        return [p for pid, p in self.participants.items() if pid != participant_id]

    def check_owner(self, subject: str) -> None:
        """Only the practitioner who created the room may manage it."""
        if subject != self.owner:
            raise Forbidden("not your room", code="not_room_owner")


class RoomRegistry:
    """The live rooms of this node (their records are in the room store)."""

    def __init__(self, default_max: int, limit: int) -> None:
        self._rooms: dict[str, Room] = {}
        self._default_max = default_max
        self._limit = limit

    def add(self, room: Room) -> Room:
        """Serve ``room`` on this node from now on."""
        self._rooms[room.id] = room
        return room

    def find(self, room_id: str) -> Room | None:
        """The live room ``room_id`` on this node, if it is served here."""
        room = self._rooms.get(room_id)
        return None if room is None or room.closed else room

    def forget(self, room_id: str) -> Room | None:
        """Stop serving a room here without ending it (another node serves it now)."""
        return self._rooms.pop(room_id, None)

    @property
    def size_limit(self) -> int:
        """The largest room this node allows (``rooms.max_participants_limit``)."""
        return self._limit

    def check_size(self, max_participants: int | None) -> int:
        """The room size to use for ``max_participants`` (None: the default); ``bad_room_size``."""
        size = self._default_max if max_participants is None else max_participants
        if not 2 <= size <= self._limit:
            raise BadRequest(
                f"max_participants must be between 2 and {self._limit}", code="bad_room_size"
            )
        return size

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

    def all(self) -> list[Room]:
        """Every open room."""
        return list(self._rooms.values())

    def owned_by(self, owner: str) -> list[Room]:
        """The open rooms of practitioner ``owner``."""
        return [r for r in self._rooms.values() if r.owner == owner]

    def __len__(self) -> int:
        return len(self._rooms)

    def participant_count(self) -> int:
        """Participants present over every room."""
        return sum(len(r.participants) for r in self._rooms.values())

    def away_count(self) -> int:
        """Participants whose places are held (connection gone) over every room."""
        return sum(len(r.away) for r in self._rooms.values())

    def waiting_count(self) -> int:
        """Clients in waiting rooms over every room."""
        return sum(len(r.waiting) for r in self._rooms.values())


# Chat carries the pages' end-to-end keys too (docs/protocol.md "Chat"): when someone joins,
# each page announces itself again and sends the newcomer its chat and media keys, and the
# newcomer sends its keys to everyone. The chat burst grows by this much per other participant
# the room can hold, so that a group of 8 forming at once is not rate-limited (and its keys
# lost); the sustained rate stays the configured one.
KEY_MESSAGES_PER_PEER = 3


def chat_burst(configured: int, max_participants: int) -> int:
    """The chat burst of a participant in a room of ``max_participants``."""
    return configured + KEY_MESSAGES_PER_PEER * max(0, max_participants - 1)


class TokenBucket:
    """A token-bucket rate limiter on an injected monotonic clock (seconds)."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def set_burst(self, burst: int) -> None:
        """A new capacity: a larger one adds the difference (the bucket started full), a
        smaller one drops the tokens beyond it."""
        grown = float(burst) - self._burst
        self._burst = float(burst)
        self._tokens = min(self._tokens + max(0.0, grown), self._burst)

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available."""
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

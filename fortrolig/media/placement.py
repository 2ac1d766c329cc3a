"""Room placement over media workers: which worker holds which room, and who is in it.

Pure bookkeeping (no processes, no I/O). A room is placed on the least-loaded live worker when
its first participant arrives and stays there until its last participant leaves, so forwarding
never crosses a process boundary. Load is the number of participants a worker carries.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

W = TypeVar("W", bound=Hashable)


class Placement(Generic[W]):
    """Rooms placed on workers of type ``W`` (anything hashable)."""

    def __init__(self) -> None:
        self._room_worker: dict[str, W] = {}
        self._rooms: dict[W, dict[str, set[str]]] = {}  # worker -> room -> participants

    def worker_of(self, room_id: str) -> W | None:
        """The worker holding ``room_id``, or None when the room is not placed."""
        return self._room_worker.get(room_id)

    def load(self, worker: W) -> int:
        """How many participants ``worker`` carries."""
        return sum(len(people) for people in self._rooms.get(worker, {}).values())

    def least_loaded(self, candidates: Iterable[W]) -> W:
        """The candidate carrying the fewest participants (the first of equals)."""
        return min(candidates, key=self.load)

    def add(self, room_id: str, participant_id: str, worker: W) -> None:
        """Place (or keep) ``room_id`` on ``worker`` and count the participant in it."""
        self._room_worker[room_id] = worker
        self._rooms.setdefault(worker, {}).setdefault(room_id, set()).add(participant_id)

    def remove(self, room_id: str, participant_id: str) -> W | None:
        """Forget a participant (and its room once empty); returns the room's worker."""
        worker = self._room_worker.get(room_id)
        if worker is None:
            return None
        rooms = self._rooms.get(worker, {})
        people = rooms.get(room_id, set())
        people.discard(participant_id)
        if not people:
            rooms.pop(room_id, None)
            self._room_worker.pop(room_id, None)
        return worker

    def remove_room(self, room_id: str) -> tuple[W, set[str]] | None:
        """Forget a room; returns its worker and the participants it had."""
        worker = self._room_worker.pop(room_id, None)
        if worker is None:
            return None
        return worker, self._rooms.get(worker, {}).pop(room_id, set())

    def evict(self, worker: W) -> list[tuple[str, str]]:
        """Forget everything ``worker`` held (it died); returns its (room, participant) pairs."""
        rooms = self._rooms.pop(worker, {})
        for room_id in rooms:
            if self._room_worker.get(room_id) == worker:
                del self._room_worker[room_id]
        return [(room_id, pid) for room_id, people in rooms.items() for pid in people]

    def room_of(self, worker: W, participant_id: str) -> str | None:
        """The room on ``worker`` that ``participant_id`` is in."""
        rooms = self._rooms.get(worker, {})
        return next((r for r, people in rooms.items() if participant_id in people), None)

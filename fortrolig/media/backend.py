"""The one interface over the media side: the in-process SFU or a pool of worker processes.

:class:`~fortrolig.media.sfu.Sfu` (one process) and :class:`~fortrolig.media.pool.WorkerPool`
(one worker process per core) both implement :class:`MediaBackend`, so the composition root
never asks which one it has. Signaling sees the peer methods through its own, smaller Protocol
(``signaling/ports.py``); this one adds the lifecycle and observability the node needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from fortrolig.core.metrics import Sample

from .subscriber import RecordedPart


class PeerEvents(Protocol):
    """What a peer tells its owner: offers to deliver, its connection and its failure."""

    async def send_offer(self, participant_id: str, sdp: str) -> None: ...

    async def media_connected(self, participant_id: str) -> None: ...

    async def media_failed(self, participant_id: str, reason: str) -> None: ...


class MediaBackend(Protocol):
    """Rooms of media peers, wherever they run.

    Errors are ``core.errors`` types with the same codes in both implementations: a call for a
    participant without a peer raises ``NotFound`` (``no_peer``).
    """

    async def start(self) -> None:
        """Get ready to take rooms (start worker processes; nothing to do in-process)."""
        ...

    async def open_peer(self, room_id: str, participant_id: str, events: PeerEvents) -> None:
        """Create the peer of a participant admitted to ``room_id`` (replacing a stale one)."""
        ...

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Apply the participant's publishing offer; returns the SFU's answer."""
        ...

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply the participant's answer to the SFU's renegotiation offer."""
        ...

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate from the participant."""
        ...

    async def close_peer(self, room_id: str, participant_id: str) -> None:
        """Remove a participant; idempotent."""
        ...

    async def close_room(self, room_id: str) -> None:
        """Close every peer of the room; idempotent."""
        ...

    async def srtp_profile(self, room_id: str, participant_id: str) -> str | None:
        """The SRTP profile negotiated with a participant (None until connected)."""
        ...

    async def start_recording(
        self, room_id: str, recording_id: str, key: bytes, participants: tuple[str, ...]
    ) -> None:
        """Record ``participants``' tracks of the room, encrypted under ``key``, into the
        recording directory (``recording_unavailable`` where nothing records)."""
        ...

    async def include_in_recording(
        self, room_id: str, recording_id: str, participant_id: str
    ) -> None:
        """A participant consented to the running recording (``no_recording``)."""
        ...

    async def stop_recording(self, room_id: str, recording_id: str) -> tuple[RecordedPart, ...]:
        """Finish the recording; returns its encrypted files (``no_recording``)."""
        ...

    async def refresh(self) -> None:
        """Bring :meth:`samples` up to date (fetch worker snapshots; nothing in-process)."""
        ...

    def samples(self) -> Iterator[Sample]:
        """Media metric samples, read at scrape time."""
        ...

    async def close(self) -> None:
        """Close every room and stop; idempotent, and afterwards every call raises."""
        ...

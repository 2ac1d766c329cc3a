"""The interfaces signaling needs from the rest of the system (implemented elsewhere)."""

from __future__ import annotations

from typing import Protocol


class MediaEvents(Protocol):
    """What the media side tells signaling about one participant."""

    async def send_offer(self, participant_id: str, sdp: str) -> None: ...

    async def media_connected(self, participant_id: str) -> None: ...

    async def media_failed(self, participant_id: str, reason: str) -> None: ...


class MediaBackend(Protocol):
    """The SFU as signaling sees it (the in-process SFU or the pool of media workers)."""

    async def open_peer(self, room_id: str, participant_id: str, events: MediaEvents) -> None: ...

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str: ...

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None: ...

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None: ...

    async def close_peer(self, room_id: str, participant_id: str) -> None: ...

    async def close_room(self, room_id: str) -> None: ...


class Recordings(Protocol):
    """Recording as signaling sees it (wired in app/recordings.py): the journal keeps the
    consent trail, the key and the files; the media side records.

    ``owner`` is the practitioner account that owns the room, whose client journal
    ``client_id`` receives the recording. Errors are ``core.errors`` types with codes.
    """

    async def check_recordable(self, owner: str, client_id: str) -> None:
        """Refuse (typed error) unless ``client_id`` is a journal of ``owner``."""
        ...

    async def audit(
        self, owner: str, client_id: str, action: str, recording_id: str, who: str
    ) -> None:
        """Append a consent step (``request``, ``accept``, ``refuse``, ``withdraw``) by ``who``
        (a participant's label) to the journal's audit chain."""
        ...

    async def start(
        self,
        owner: str,
        client_id: str,
        room_id: str,
        recording_id: str,
        consented_by: tuple[str, ...],
        participants: tuple[str, ...],
    ) -> None:
        """Begin the recording in the journal (audited) and start recording ``participants``."""
        ...

    async def include(self, room_id: str, recording_id: str, participant_id: str) -> None:
        """A participant who entered later consented: record them too."""
        ...

    async def stop(
        self,
        owner: str,
        room_id: str,
        recording_id: str,
        reason: str,
        consented_by: tuple[str, ...],
    ) -> None:
        """Stop recording and store the encrypted files in the journal (audited)."""
        ...

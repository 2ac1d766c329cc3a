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

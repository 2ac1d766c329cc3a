"""The recording of a consultation, as the signaling sessions drive it.

:class:`RecordingControl` applies the consent rules (``recording_consent.py``) to a live room,
writes each step to the journal's audit chain and starts, extends or stops the recorder
through the :class:`~fortrolig.signaling.ports.Recordings` port, and tells everyone in the room
with a ``recording`` message after each change. Operations on one room's recording run one at
a time (a lock per room): an answer that arrives while the recorder is being started waits, so
a withdrawal is never lost between "everyone accepted" and "recording".

Audit comes first: a consent step is written to the journal before it takes effect, so the
chain never shows less than what happened. When the journal or the media side fails while
starting, the request ends (``stopped``, reason ``failed``) and the practitioner sees the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fortrolig.core.errors import Conflict
from fortrolig.core.ids import new_id

from . import protocol as p
from . import recording_consent as rules
from .ports import Recordings
from .recording_consent import Outcome, RecordingConsent
from .rooms import Participant, Room

if TYPE_CHECKING:
    from .service import Session

log = logging.getLogger(__name__)

Send = Callable[[str, p.ServerMessage], None]
"""Sends a message to one participant of the room (by id), if connected."""


class RecordingControl:
    """Consent and recording for the rooms of one node."""

    def __init__(self, port: Recordings | None, send: Send) -> None:
        self._port = port
        self._send = send
        self._locks: dict[str, asyncio.Lock] = {}
        self.started = 0  # counters for /metrics
        self.stopped = 0

    def _lock(self, room: Room) -> asyncio.Lock:
        return self._locks.setdefault(room.id, asyncio.Lock())

    def _require_port(self) -> Recordings:
        if self._port is None:
            raise Conflict("this node does not record consultations", code="recording_unavailable")
        return self._port

    # -- what participants ask -------------------------------------------------------------

    async def request(self, room: Room, me: Participant, client_id: str) -> None:
        """``me`` asks to record into ``client_id``'s journal; everyone else is asked."""
        port = self._require_port()
        async with self._lock(room):
            rules.check_can_request(room, me)
            await port.check_recordable(room.owner, client_id)
            consent = rules.new_request(new_id("rec"), client_id, room, me)
            await port.audit(room.owner, client_id, "request", consent.id, rules.label(me))
            room.recording = consent
            if not consent.waiting_for:  # alone in the room: nobody else to ask
                await self._start(room, consent)
            if room.recording is consent:
                self._broadcast(room, consent)

    async def answer(self, room: Room, me: Participant, recording_id: str, accept: bool) -> None:
        """``me`` accepts or refuses (while it runs: withdraws from) the recording."""
        port = self._require_port()
        async with self._lock(room):
            consent = rules.current(room, recording_id)
            who = rules.label(me)
            asked = me.id in consent.waiting_for
            outcome = consent.answer(me.id, accept, who)
            action = "accept" if accept else ("refuse" if asked else "withdraw")
            await port.audit(room.owner, consent.client_id, action, consent.id, who)
            if outcome is Outcome.STOP:
                await self._end(room, consent, "refused" if asked else "withdrawn", me.id)
                return
            if outcome is Outcome.START:
                await self._start(room, consent)
            elif outcome is Outcome.INCLUDE:
                await port.include(room.id, consent.id, me.id)
            if room.recording is consent:
                self._broadcast(room, consent)

    async def stop(self, room: Room, me: Participant, recording_id: str) -> None:
        """``me`` stops the recording (a practitioner) or withdraws from it (anyone)."""
        port = self._require_port()
        async with self._lock(room):
            consent = rules.current(room, recording_id)
            reason = "stopped" if me.role == "practitioner" else "withdrawn"
            if reason == "withdrawn" or not consent.running:  # (a stop is audited by the port)
                await port.audit(
                    room.owner, consent.client_id, "withdraw", consent.id, rules.label(me)
                )
            await self._end(room, consent, reason, me.id)

    # -- what the room does ----------------------------------------------------------------

    async def entered(self, room: Room, me: Participant) -> None:
        """``me`` entered the room: if a recording is asked for or runs, they are asked too."""
        consent = room.recording
        if consent is None:
            return
        async with self._lock(room):
            if room.recording is consent:
                consent.entered(me.id)
                self._broadcast(room, consent)

    async def left(self, room: Room, me: Participant) -> None:
        """``me`` left: without a practitioner the recording stops; a request may complete."""
        consent = room.recording
        if consent is None:
            return
        async with self._lock(room):
            if room.recording is not consent:
                return
            outcome = consent.left(me.id, rules.practitioners(room))
            if outcome is Outcome.STOP:
                await self._end(room, consent, "left", me.id)
            else:
                if outcome is Outcome.START:
                    await self._start(room, consent)
                if room.recording is consent:
                    self._broadcast(room, consent)

    async def end_room(self, room: Room, reason: str) -> None:
        """The room ends: its recording stops first (the files go to the journal)."""
        consent = room.recording
        if consent is None:
            return
        async with self._lock(room):
            if room.recording is consent:
                await self._end(room, consent, "room_ended", None)
        self._locks.pop(room.id, None)

    # -- internals -------------------------------------------------------------------------

    async def _start(self, room: Room, consent: RecordingConsent) -> None:
        port = self._require_port()
        # Whoever's answer completed the consent is not at fault if this fails: everyone is
        # told (``stopped``, ``failed``) and the cause is logged, not sent to that participant.
        try:
            await port.start(
                room.owner,
                consent.client_id,
                room.id,
                consent.id,
                consent.consented_by(),
                tuple(consent.accepted),
            )
        except Exception:
            log.exception("recording %s of room %s did not start", consent.id, room.id)
            room.recording = None
            self._broadcast_stopped(room, consent, "failed", None)
            return
        consent.running = True
        self.started += 1

    async def _end(
        self, room: Room, consent: RecordingConsent, reason: str, by: str | None
    ) -> None:
        room.recording = None  # whatever happens below, this request is over
        try:
            if consent.running:
                await self._require_port().stop(
                    room.owner, room.id, consent.id, reason, consent.consented_by()
                )
                self.stopped += 1
        finally:
            self._broadcast_stopped(room, consent, reason, by)

    def _broadcast(self, room: Room, consent: RecordingConsent) -> None:
        msg = p.Recording(
            recording_id=consent.id,
            state=consent.state,
            requested_by=consent.requested_by,
            accepted=tuple(consent.accepted),
            waiting_for=tuple(consent.waiting_for),
        )
        self._tell(room, msg)

    def _broadcast_stopped(
        self, room: Room, consent: RecordingConsent, reason: str, by: str | None
    ) -> None:
        msg = p.Recording(
            recording_id=consent.id,
            state="stopped",
            requested_by=consent.requested_by,
            accepted=tuple(consent.accepted),
            reason=reason,
            by=by,
        )
        self._tell(room, msg)

    def _tell(self, room: Room, msg: p.Recording) -> None:
        for pid in room.participants:
            self._send(pid, msg)


def handlers(session: Session) -> dict[type[object], Callable[[object], object]]:
    """The session's handlers of the recording messages."""

    async def on_request(msg: p.RecordRequest) -> None:
        room, me = session._joined()
        await session.service.recording.request(room, me, msg.client_id)

    async def on_consent(msg: p.RecordConsent) -> None:
        room, me = session._joined()
        await session.service.recording.answer(room, me, msg.recording_id, msg.accept)

    async def on_stop(msg: p.RecordStop) -> None:
        room, me = session._joined()
        await session.service.recording.stop(room, me, msg.recording_id)

    return {
        p.RecordRequest: on_request,  # type: ignore[dict-item]
        p.RecordConsent: on_consent,  # type: ignore[dict-item]
        p.RecordStop: on_stop,  # type: ignore[dict-item]
    }

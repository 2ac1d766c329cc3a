"""Consent to record a consultation: pure domain rules (no I/O).

A practitioner asks; everyone present must accept before anything is recorded; anyone may
refuse (nothing is recorded) or withdraw (it stops at once); a participant who enters while a
recording runs is asked too and is not recorded until they accept — if they refuse, it stops.
The session layer (``recording_session.py``) turns these decisions into journal audit entries,
media calls and ``recording`` messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from fortrolig.core.errors import Conflict, Forbidden, NotFound

from .rooms import Participant, Room

ANONYMOUS = "anonymous"


class Outcome(Enum):
    """What an answer or a departure means for the recording."""

    WAIT = "wait"  # still waiting for someone: nothing changes yet
    START = "start"  # everyone present accepted: start recording
    INCLUDE = "include"  # a latecomer accepted a running recording: record them too
    STOP = "stop"  # refused, withdrawn or nobody left to ask: it is over


@dataclass
class RecordingConsent:
    """The state of one recording request in a room (at most one at a time).

    ``accepted`` maps participant id → the label the journal's audit chain records for them
    (role and verified identity, in the order they accepted); ``waiting_for`` are those still
    to answer. ``running`` is set once the recording started and never unset.
    """

    id: str
    client_id: str
    requested_by: str
    accepted: dict[str, str] = field(default_factory=dict)
    waiting_for: list[str] = field(default_factory=list)
    running: bool = False

    @property
    def state(self) -> str:
        """``asking`` until it starts, then ``recording``."""
        return "recording" if self.running else "asking"

    def consented_by(self) -> tuple[str, ...]:
        """The labels of everyone who accepted, in order."""
        return tuple(self.accepted.values())

    def answer(self, participant_id: str, accept: bool, who: str) -> Outcome:
        """``participant_id``'s answer; ``who`` is their audit label (:func:`label`).
        ``not_asked`` when they have nothing to answer."""
        if participant_id not in self.waiting_for:
            if participant_id in self.accepted and not accept:
                return Outcome.STOP  # a withdrawal by someone who had accepted
            raise Conflict("you were not asked about this recording", code="not_asked")
        if not accept:
            return Outcome.STOP
        self.waiting_for.remove(participant_id)
        self.accepted[participant_id] = who
        if self.running:
            return Outcome.INCLUDE
        return Outcome.WAIT if self.waiting_for else Outcome.START

    def entered(self, participant_id: str) -> None:
        """Someone entered the room: they must answer (and are not recorded until then)."""
        if participant_id not in self.accepted and participant_id not in self.waiting_for:
            self.waiting_for.append(participant_id)

    def left(self, participant_id: str, practitioners_left: int) -> Outcome:
        """Someone left. Without a practitioner it stops; a pending request may now be
        complete (the one who had not answered is gone)."""
        was_waiting = participant_id in self.waiting_for
        if was_waiting:
            self.waiting_for.remove(participant_id)
        if practitioners_left == 0:
            return Outcome.STOP
        if not self.running and was_waiting and not self.waiting_for:
            return Outcome.START
        return Outcome.WAIT


def label(participant: Participant) -> str:
    """How the audit chain names a consenting participant: role and what verified them."""
    who = participant.verified or participant.name or participant.id
    return f"{participant.role}:{who}"


def check_can_request(room: Room, me: Participant) -> None:
    """Refuse a request that cannot be recorded, changing nothing.

    Only practitioners ask; one recording at a time; an anonymous client has no journal, so a
    consultation with one cannot be recorded.
    """
    if me.role != "practitioner":
        raise Forbidden("only a practitioner can ask to record", code="practitioner_only")
    if room.recording is not None:
        raise Conflict("a recording is already asked for or running", code="recording_busy")
    if any(p.verification == ANONYMOUS for p in room.participants.values()):
        raise Forbidden(
            "an anonymous consultation has no journal and cannot be recorded",
            code="recording_not_allowed",
        )


def new_request(recording_id: str, client_id: str, room: Room, me: Participant) -> RecordingConsent:
    """The request of ``me``: they have consented; everyone else present is asked."""
    consent = RecordingConsent(recording_id, client_id, me.id)
    consent.accepted[me.id] = label(me)
    consent.waiting_for = [pid for pid in room.participants if pid != me.id]
    return consent


def current(room: Room, recording_id: str) -> RecordingConsent:
    """The room's request ``recording_id`` (``no_recording`` when it is not the current one)."""
    consent = room.recording
    if consent is None or consent.id != recording_id:
        raise NotFound("no such recording in this consultation", code="no_recording")
    return consent


def practitioners(room: Room) -> int:
    """Practitioners present (a recording needs one)."""
    return sum(1 for p in room.participants.values() if p.role == "practitioner")

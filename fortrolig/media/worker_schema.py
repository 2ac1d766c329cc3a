"""The messages of the media worker channel, shared by both sides. Pure: standard library only.

The signaling process (:mod:`fortrolig.media.pool`) and a media worker
(:mod:`fortrolig.media.worker`) exchange one JSON object per line, each with a ``type`` tag:

* **requests** (signaling → worker) travel as a :class:`Call`: the request's fields plus the
  ``id`` its reply carries back;
* **responses** (worker → signaling) travel as a :class:`Reply` with that ``id``; a domain error
  is a :class:`Failed` response naming the error class and code, so the signaling side raises
  the same typed error the worker's SFU raised;
* **events** (worker → signaling, no ``id``): readiness, a stats snapshot every second,
  renegotiation offers and peer state.

Messages are frozen dataclasses whose field names are the wire names. :func:`dump` writes any of
them, :func:`parse_call` reads what a worker receives and :func:`parse_from_worker` what the
signaling side receives. Any bad input raises :class:`~fortrolig.core.errors.ProtocolError` with
one of the codes ``bad_json``, ``bad_type``, ``unknown_type`` or ``bad_field``; nothing else
escapes. The worker's settings travel on its command line (:func:`dump_settings`,
:func:`parse_settings`), checked the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

from fortrolig.core import errors, wire
from fortrolig.core.errors import ProtocolError

from .settings import IceServer, MediaSettings
from .subscriber import RecordedPart, RecordedTrack

ID_MAX: Final = 256  # room and participant ids (signaling's are 64; the channel allows more)
SDP_MAX: Final = 1 << 19  # an SDP is < 64 KiB; the channel's line limit is 1 MiB
TEXT_MAX: Final = 1024
CODE_MAX: Final = 64
MAX_ITEMS: Final = 4096
_RID_MAX: Final = 2**53  # request ids count up from 1; JSON numbers stay exact below 2**53


def _s(max_len: int = TEXT_MAX, *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"max_len": max_len})


def _room() -> Any:
    return _s(ID_MAX)


def _required() -> Any:
    return field()  # (a bare annotation would read, to mypy, as following fields with defaults)


# --- requests (signaling → worker) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenPeer:
    """Create the participant's peer in the room (replacing a stale one). → :class:`Done`"""

    type: ClassVar[str] = "open_peer"
    room_id: str = _room()
    participant_id: str = _room()


@dataclass(frozen=True, slots=True)
class Publish:
    """Apply the participant's publishing offer. → :class:`Published`"""

    type: ClassVar[str] = "publish"
    room_id: str = _room()
    participant_id: str = _room()
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class Answer:
    """Apply the participant's answer to the SFU's renegotiation offer. → :class:`Done`"""

    type: ClassVar[str] = "answer"
    room_id: str = _room()
    participant_id: str = _room()
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class AddCandidate:
    """A trickled ICE candidate from the participant. → :class:`Done`"""

    type: ClassVar[str] = "add_candidate"
    room_id: str = _room()
    participant_id: str = _room()
    candidate: str = _s()
    sdp_mid: str | None = _s(CODE_MAX)
    sdp_mline_index: int | None = _required()


@dataclass(frozen=True, slots=True)
class ClosePeer:
    """Remove the participant's peer; idempotent. → :class:`Done`"""

    type: ClassVar[str] = "close_peer"
    room_id: str = _room()
    participant_id: str = _room()


@dataclass(frozen=True, slots=True)
class CloseRoom:
    """Close every peer of the room; idempotent. → :class:`Done`"""

    type: ClassVar[str] = "close_room"
    room_id: str = _room()


@dataclass(frozen=True, slots=True)
class GetSrtpProfile:
    """The SRTP profile negotiated with the participant. → :class:`SrtpProfile`"""

    type: ClassVar[str] = "srtp_profile"
    room_id: str = _room()
    participant_id: str = _room()


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the room's consenting participants. → :class:`Done`

    ``key`` is the recording's 32-byte key in hex: it travels only over this pipe between two
    processes of one node and lives only in the recorder's memory (the journal keeps it wrapped).
    """

    type: ClassVar[str] = "start_recording"
    room_id: str = _room()
    recording_id: str = _room()
    key: str = _s(64)
    participants: tuple[str, ...] = _required()


@dataclass(frozen=True, slots=True)
class IncludeInRecording:
    """A participant consented to the running recording. → :class:`Done`"""

    type: ClassVar[str] = "include_in_recording"
    room_id: str = _room()
    recording_id: str = _room()
    participant_id: str = _room()


@dataclass(frozen=True, slots=True)
class StopRecording:
    """Finish the recording. → :class:`RecordingStopped`"""

    type: ClassVar[str] = "stop_recording"
    room_id: str = _room()
    recording_id: str = _room()


@dataclass(frozen=True, slots=True)
class GetSnapshot:
    """The SFU's state for metrics, now. → :class:`Snapshot`"""

    type: ClassVar[str] = "snapshot"


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Close every room and exit (no reply: the pipe closing is the answer)."""

    type: ClassVar[str] = "shutdown"


# --- responses (worker → signaling) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    """The request succeeded and has no result."""

    type: ClassVar[str] = "done"


@dataclass(frozen=True, slots=True)
class Published:
    """The SFU's answer to a publishing offer."""

    type: ClassVar[str] = "published"
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class SrtpProfile:
    """The negotiated SRTP profile (None until connected)."""

    type: ClassVar[str] = "srtp_profile"
    profile: str | None = _s(CODE_MAX)


@dataclass(frozen=True, slots=True)
class RecordingStopped:
    """The recording's finished files."""

    type: ClassVar[str] = "recording_stopped"
    parts: tuple[RecordedPart, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Plain-data SFU state (see :meth:`fortrolig.media.sfu.Sfu.snapshot`)."""

    type: ClassVar[str] = "snapshot"
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Failed:
    """The request raised: a domain error by class name and code, or ``internal_error``."""

    type: ClassVar[str] = "error"
    cls: str = _s(CODE_MAX)
    code: str = _s(CODE_MAX)
    message: str = _s()

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failed:
        """A domain error as data; anything else becomes a generic internal error."""
        if isinstance(exc, errors.FortroligError):
            return cls(type(exc).__name__, exc.code, exc.message[:TEXT_MAX])
        return cls("FortroligError", "internal_error", "media worker error")

    def error(self) -> errors.FortroligError:
        """The typed error to raise on the signaling side (unknown classes: the base class)."""
        return _ERRORS.get(self.cls, errors.FortroligError)(self.message, code=self.code)


# --- events (worker → signaling) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker serves requests."""

    type: ClassVar[str] = "ready"
    pid: int


@dataclass(frozen=True, slots=True)
class Stats:
    """The SFU's snapshot, pushed every second."""

    type: ClassVar[str] = "stats"
    snapshot: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Offer:
    """A renegotiation offer to deliver to the participant."""

    type: ClassVar[str] = "offer"
    participant_id: str = _room()
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class Connected:
    """The participant's peer connected (with AES-256-GCM SRTP)."""

    type: ClassVar[str] = "connected"
    participant_id: str = _room()


@dataclass(frozen=True, slots=True)
class PeerFailed:
    """The participant's peer failed; ``reason`` is a code such as ``connect_timeout``."""

    type: ClassVar[str] = "failed"
    participant_id: str = _room()
    reason: str = _s(CODE_MAX)


Request: TypeAlias = (
    OpenPeer
    | Publish
    | Answer
    | AddCandidate
    | ClosePeer
    | CloseRoom
    | GetSrtpProfile
    | StartRecording
    | IncludeInRecording
    | StopRecording
    | GetSnapshot
    | Shutdown
)
Response: TypeAlias = Done | Published | SrtpProfile | RecordingStopped | Snapshot | Failed
Event: TypeAlias = Ready | Stats | Offer | Connected | PeerFailed


@dataclass(frozen=True, slots=True)
class Call:
    """A request on the wire: its fields, its ``type`` and the ``id`` of the call."""

    id: int
    request: Request


@dataclass(frozen=True, slots=True)
class Reply:
    """A response on the wire: its fields, its ``type`` and the ``id`` of the call it answers."""

    id: int
    response: Response


REQUESTS: Final[Mapping[str, type[Any]]] = {
    cls.type: cls
    for cls in (
        OpenPeer,
        Publish,
        Answer,
        AddCandidate,
        ClosePeer,
        CloseRoom,
        GetSrtpProfile,
        StartRecording,
        IncludeInRecording,
        StopRecording,
        GetSnapshot,
        Shutdown,
    )
}
RESPONSES: Final[Mapping[str, type[Any]]] = {
    cls.type: cls for cls in (Done, Published, SrtpProfile, RecordingStopped, Snapshot, Failed)
}
EVENTS: Final[Mapping[str, type[Any]]] = {
    cls.type: cls for cls in (Ready, Stats, Offer, Connected, PeerFailed)
}
assert not set(RESPONSES) & set(EVENTS), "one stream carries both: their tags must differ"

_ERRORS: Final[Mapping[str, type[errors.FortroligError]]] = {
    cls.__name__: cls
    for cls in (
        errors.FortroligError,
        errors.ProtocolError,
        errors.BadRequest,
        errors.Unauthenticated,
        errors.Forbidden,
        errors.NotFound,
        errors.Conflict,
        errors.PayloadTooLarge,
        errors.RateLimited,
    )
}

R = TypeVar("R", Done, Published, SrtpProfile, RecordingStopped, Snapshot)


def expect(response: Response, cls: type[R]) -> R:
    """``response`` as the type its request promised; a :class:`Failed` raises its error."""
    if isinstance(response, Failed):
        raise response.error()
    if not isinstance(response, cls):
        raise ProtocolError(
            f"expected a {cls.type!r} response, got {response.type!r}", code="bad_type"
        )
    return response


# --- dump and parse --------------------------------------------------------------------------


def dump(message: Call | Reply | Event) -> str:
    """One message as compact JSON (one line: JSON never contains a raw newline)."""
    if isinstance(message, Call | Reply):
        inner = message.request if isinstance(message, Call) else message.response
        body = {"type": inner.type, "id": message.id, **wire.to_json(inner)}
    else:
        body = {"type": message.type, **wire.to_json(message)}
    return wire.dumps(body)


def parse_call(raw: str | bytes) -> Call:
    """What a worker reads: one request with its call id."""
    data = wire.load_object(raw)
    kind = wire.pop_type(data)
    cls = REQUESTS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown request type {kind[:CODE_MAX]!r}", code="unknown_type")
    rid = _call_id(data, kind)
    return Call(rid, _SCHEMA.build(cls, data, kind))


def call_id(raw: str | bytes) -> int | None:
    """The ``id`` of a request line that may not parse (to reply with its error), or None."""
    try:
        data = wire.load_object(raw)
        return _call_id(data, "request")
    except ProtocolError:
        return None


def parse_from_worker(raw: str | bytes) -> Reply | Event:
    """What the signaling side reads: a reply to one of its calls, or an event."""
    data = wire.load_object(raw)
    kind = wire.pop_type(data)
    if kind in EVENTS:
        event: Event = _SCHEMA.build(EVENTS[kind], data, kind)
        return event
    cls = RESPONSES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown response type {kind[:CODE_MAX]!r}", code="unknown_type")
    rid = _call_id(data, kind)
    return Reply(rid, _SCHEMA.build(cls, data, kind))


def dump_settings(settings: MediaSettings) -> str:
    """The settings handed to a worker on its command line."""
    return wire.dumps(wire.to_json(settings))


def parse_settings(raw: str | bytes) -> MediaSettings:
    """The inverse of :func:`dump_settings`."""
    settings: MediaSettings = _SCHEMA.build(MediaSettings, wire.load_object(raw), "settings")
    return settings


def _call_id(data: dict[str, Any], kind: str) -> int:
    rid = data.pop("id", None)
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= _RID_MAX:
        raise wire.bad(kind, "'id' must be an integer in 0..2**53")
    return rid


# Type hints resolved once at import (see fortrolig.core.wire). Lists may be long (a snapshot's
# rooms); every string has its limit.
_SCHEMA: Final = wire.Schema(
    (
        *REQUESTS.values(),
        *RESPONSES.values(),
        *EVENTS.values(),
        MediaSettings,
        IceServer,
        RecordedPart,
        RecordedTrack,
    ),
    max_items=MAX_ITEMS,
    text_max=TEXT_MAX,
    int_range=(-(2**63), 2**63 - 1),
)

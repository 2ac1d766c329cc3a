"""The WebSocket wire protocol (see docs/protocol.md). Pure: standard library only.

Every message is a JSON object with a ``type`` tag. Messages are frozen dataclasses whose field
names are the wire names; :func:`parse` reads a client message, :func:`parse_server` a server
message (for the load tester and tests), and :func:`dump` writes either. Any bad input raises
:class:`~fortrolig.core.errors.ProtocolError` with one of the codes ``bad_json``, ``bad_type``,
``unknown_type``, ``bad_field`` or ``unsupported_version``; nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

from fortrolig.core import wire
from fortrolig.core.errors import ProtocolError

PROTOCOL_VERSION: Final = 1

# Limits in UTF-8 bytes; documented in docs/protocol.md.
NAME_MAX: Final = 64
ID_MAX: Final = 64
TOKEN_MAX: Final = 8192
SDP_MAX: Final = 65536
CANDIDATE_MAX: Final = 1024
MID_MAX: Final = 64
CHAT_TEXT_MAX: Final = 65536
CODE_MAX: Final = 64
TEXT_MAX: Final = 1024
URL_MAX: Final = 2048
MAX_ITEMS: Final = 64
ROLES: Final = ("practitioner", "client")
VERIFICATIONS: Final = ("email_code", "anonymous", "eid", "none")
RECORDING_STATES: Final = ("asking", "recording", "stopped")
SCREEN_SHARE: Final = ("everyone", "practitioners")  # who may share a screen in a room
# A page's own connection quality, from its getStats (RTT, loss, bitrate; "unknown" until measured).
QUALITY: Final = ("unknown", "good", "fair", "poor")
RECORDING_REASONS: Final = ("refused", "withdrawn", "stopped", "left", "room_ended", "failed")
ICE_TRANSPORT_POLICIES: Final = ("all", "relay")  # RTCIceTransportPolicy
VERIFIED_MAX: Final = 320  # an e-mail address (RFC 5321 path limit is 256; names are shorter)


def _s(max_len: int = TEXT_MAX, *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"max_len": max_len})


def _i(lo: int, hi: int, *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"range": (lo, hi)})


def _required() -> Any:
    return field()  # (a bare annotation would read, to mypy, as following fields with defaults)


def _choice(choices: tuple[str, ...], *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"choices": choices})


def _role() -> Any:
    return _choice(ROLES)


def _verification() -> Any:
    return _choice(VERIFICATIONS)


# --- client → server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a connection: protocol version and a join or resume token."""

    type: ClassVar[str] = "hello"
    v: int = _i(0, 2**31)
    token: str = _s(TOKEN_MAX)


@dataclass(frozen=True, slots=True)
class Join:
    """Enter the room, optionally with a display name."""

    type: ClassVar[str] = "join"
    name: str | None = _s(NAME_MAX, default=None)


@dataclass(frozen=True, slots=True)
class Offer:
    """An SDP offer: the client's one publish offer, or the server's renegotiation."""

    type: ClassVar[str] = "offer"
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class Answer:
    """An SDP answer to the other side's offer."""

    type: ClassVar[str] = "answer"
    sdp: str = _s(SDP_MAX)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A trickled ICE candidate from the client; an empty ``candidate`` ends the candidates."""

    type: ClassVar[str] = "candidate"
    candidate: str = _s(CANDIDATE_MAX)
    sdpMid: str | None = _s(MID_MAX, default=None)  # wire name
    sdpMLineIndex: int | None = _i(0, 1023, default=None)  # wire name

    @property
    def end_of_candidates(self) -> bool:
        """True for the empty candidate that signals the end of gathering."""
        return self.candidate == ""


@dataclass(frozen=True, slots=True)
class Chat:
    """A chat line from the client; ``id`` is the client's own id for it (echoed back)."""

    type: ClassVar[str] = "chat"
    text: str = _s(CHAT_TEXT_MAX)
    id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class MediaState:
    """Whether the client's microphone and camera are on, and whether the browser blocks them
    (access refused: the participant cannot turn them on until they allow it)."""

    type: ClassVar[str] = "media_state"
    audio: bool
    video: bool
    audio_blocked: bool = False
    video_blocked: bool = False
    # Sharing a screen on the publish offer's second video m-line (refused with
    # ``screen_share_not_allowed`` for a client while practitioners restrict it).
    screen: bool = False
    # The page's own connection quality (quality.js grades its getStats), shown on its tile.
    quality: str = _choice(QUALITY, default="unknown")
    # It stopped sending video because its network is too poor for it (audio only, camera on).
    audio_only: bool = False


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the room; the server answers ``bye`` and closes with 1000."""

    type: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class EndRoom:
    """A practitioner in the room ends the consultation for everyone."""

    type: ClassVar[str] = "end_room"


@dataclass(frozen=True, slots=True)
class Admit:
    """A practitioner in the room lets a waiting client in."""

    type: ClassVar[str] = "admit"
    participant_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class Deny:
    """A practitioner in the room turns a waiting client away (``bye denied``, close 1000)."""

    type: ClassVar[str] = "deny"
    participant_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class MuteParticipant:
    """A practitioner turns a participant's microphone off (only they can turn it on again)."""

    type: ClassVar[str] = "mute_participant"
    participant_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class SetScreenShare:
    """A practitioner decides who may share a screen: ``everyone`` or ``practitioners``."""

    type: ClassVar[str] = "set_screen_share"
    allowed: str = _choice(SCREEN_SHARE)


@dataclass(frozen=True, slots=True)
class RemoveParticipant:
    """A practitioner removes a participant (``bye removed``; its resume token cannot return)."""

    type: ClassVar[str] = "remove_participant"
    participant_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """A practitioner asks to record the consultation into the journal of ``client_id``;
    everyone present is asked (``recording`` state ``asking``), the asker has consented."""

    type: ClassVar[str] = "record_request"
    client_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class RecordConsent:
    """A participant's answer to the recording request ``recording_id``. ``accept: false``
    refuses it (nothing is recorded); while it runs, it withdraws (it stops at once)."""

    type: ClassVar[str] = "record_consent"
    recording_id: str = _s(ID_MAX)
    accept: bool = _required()


@dataclass(frozen=True, slots=True)
class RecordStop:
    """Anyone in the room withdraws from (or, a practitioner, stops) the recording."""

    type: ClassVar[str] = "record_stop"
    recording_id: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level ping; the server answers ``pong``."""

    type: ClassVar[str] = "ping"


# --- server → client -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """What everyone in a room sees of a participant."""

    id: str = _s(ID_MAX)
    role: str = _role()
    name: str | None = _s(NAME_MAX, default=None)
    audio: bool = True
    video: bool = True
    # True while its connection is gone and its place is held (it may come back).
    away: bool = False
    # The browser refused access to the microphone / camera ("blocked", not just "off").
    audio_blocked: bool = False
    video_blocked: bool = False
    # Sharing a screen now: its ``<id>-screen`` track is to be laid out large.
    screen: bool = False
    # Its connection quality as its page reports it, and whether it fell back to audio only.
    quality: str = _choice(QUALITY, default="unknown")
    audio_only: bool = False


@dataclass(frozen=True, slots=True)
class WaitingClient:
    """A client in the waiting room as practitioners see it: how it proved who it is.

    ``verification`` is ``none`` for a client whose token came from a direct link rather than
    an invite; ``verified`` is the verified e-mail (email_code), the verified name (eid), a
    pseudonym (anonymous) or null (none). ``returning``: it came in again through an invite it
    had used before (e.g. after closing its tab), verified afresh.
    """

    id: str = _s(ID_MAX)
    verification: str = _verification()
    name: str | None = _s(NAME_MAX, default=None)
    verified: str | None = _s(VERIFIED_MAX, default=None)
    returning: bool = False


@dataclass(frozen=True, slots=True)
class Welcome:
    """Answer to a good ``hello``."""

    type: ClassVar[str] = "welcome"
    v: int = _i(1, 2**31)
    participant_id: str = _s(ID_MAX)
    room_id: str = _s(ID_MAX)
    role: str = _role()
    ice_servers: tuple[dict[str, Any], ...] = ()
    # "relay": the room forces TURN; the page sets iceTransportPolicy to it.
    ice_transport_policy: str = _choice(ICE_TRANSPORT_POLICIES, default="all")
    resume_token: str = _s(TOKEN_MAX, default="")
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Joined:
    """Answer to ``join``: everyone already in the room (not the joiner)."""

    type: ClassVar[str] = "joined"
    participants: tuple[ParticipantInfo, ...] = ()
    # Who may share a screen in this room (changes arrive as ``screen_share``).
    screen_share: str = _choice(SCREEN_SHARE, default="everyone")


@dataclass(frozen=True, slots=True)
class ScreenShare:
    """Who may share a screen changed (``by`` the practitioner who changed it)."""

    type: ClassVar[str] = "screen_share"
    allowed: str = _choice(SCREEN_SHARE)
    by: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    """Someone else joined the room."""

    type: ClassVar[str] = "participant_joined"
    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    """Someone else left the room."""

    type: ClassVar[str] = "participant_left"
    participant_id: str = _s(ID_MAX)
    reason: str = _s(CODE_MAX)


@dataclass(frozen=True, slots=True)
class ParticipantAway:
    """Someone else's connection dropped; their place is held for ``grace_s`` seconds.

    They come back with ``participant_joined`` (same id) or leave with ``participant_left``
    (reason ``disconnected`` when the grace ran out).
    """

    type: ClassVar[str] = "participant_away"
    participant_id: str = _s(ID_MAX)
    grace_s: int = 0


@dataclass(frozen=True, slots=True)
class ParticipantUpdated:
    """Someone's name or media state changed."""

    type: ClassVar[str] = "participant_updated"
    participant: ParticipantInfo


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A chat line delivered to the room (also echoed to its sender). ``ts`` is unix ms."""

    type: ClassVar[str] = "chat"
    id: str = _s(ID_MAX)
    from_id: str = _s(ID_MAX)
    text: str = _s(CHAT_TEXT_MAX)
    ts: int = _i(0, 2**53)


@dataclass(frozen=True, slots=True)
class Error:
    """A user error; the connection stays open. ``ref`` names the message type it answers."""

    type: ClassVar[str] = "error"
    code: str = _s(CODE_MAX)
    message: str = _s(TEXT_MAX)
    ref: str | None = _s(CODE_MAX, default=None)


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to ``ping``."""

    type: ClassVar[str] = "pong"


@dataclass(frozen=True, slots=True)
class Bye:
    """The server ends the session; a close frame follows."""

    type: ClassVar[str] = "bye"
    reason: str = _s(CODE_MAX)


@dataclass(frozen=True, slots=True)
class Muted:
    """A practitioner turned this participant's microphone off; the page mutes itself."""

    type: ClassVar[str] = "muted"
    by: str = _s(ID_MAX)


@dataclass(frozen=True, slots=True)
class Waiting:
    """To a client after ``join`` in a room with a waiting room: wait to be admitted."""

    type: ClassVar[str] = "waiting"


@dataclass(frozen=True, slots=True)
class WaitingRoom:
    """To practitioners in the room: every client waiting now, in arrival order."""

    type: ClassVar[str] = "waiting_room"
    clients: tuple[WaitingClient, ...] = ()


@dataclass(frozen=True, slots=True)
class ResumeToken:
    """A fresh single-use resume token, sent every half resume-token lifetime."""

    type: ClassVar[str] = "resume_token"
    token: str = _s(TOKEN_MAX)


@dataclass(frozen=True, slots=True)
class Redirect:
    """This node does not serve the room: reconnect to ``ws_url`` (the owner node's WebSocket)
    and say ``hello`` there with ``resume_token``, which names the same participant. The
    connection closes with 4307 right after. ``url`` is the owner's public base URL."""

    type: ClassVar[str] = "redirect"
    url: str = _s(URL_MAX)
    ws_url: str = _s(URL_MAX)
    resume_token: str = _s(TOKEN_MAX)


@dataclass(frozen=True, slots=True)
class Recording:
    """The consultation's recording, sent to everyone in the room on every change and to a
    participant who enters while a request or a recording runs.

    ``asking``: waiting for ``waiting_for`` to answer; nothing is recorded yet. ``recording``:
    everyone in ``accepted`` is being recorded (someone still in ``waiting_for`` joined later
    and is not recorded until they accept). ``stopped``: over, with ``reason`` and ``by`` (the
    participant who refused, withdrew or stopped it).
    """

    type: ClassVar[str] = "recording"
    recording_id: str = _s(ID_MAX)
    state: str = _choice(RECORDING_STATES)
    requested_by: str = _s(ID_MAX)
    accepted: tuple[str, ...] = ()
    waiting_for: tuple[str, ...] = ()
    reason: str | None = _choice(RECORDING_REASONS, default=None)
    by: str | None = _s(ID_MAX, default=None)


ClientMessage: TypeAlias = (
    Hello
    | Join
    | Offer
    | Answer
    | Candidate
    | Chat
    | MediaState
    | Leave
    | Ping
    | EndRoom
    | Admit
    | Deny
    | MuteParticipant
    | SetScreenShare
    | RemoveParticipant
    | RecordRequest
    | RecordConsent
    | RecordStop
)
ServerMessage: TypeAlias = (
    Welcome
    | Joined
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantAway
    | ParticipantUpdated
    | Answer
    | Offer
    | ChatMessage
    | Error
    | Pong
    | Bye
    | ResumeToken
    | Waiting
    | Muted
    | ScreenShare
    | WaitingRoom
    | Redirect
    | Recording
)

CLIENT_MESSAGES: Final[Mapping[str, type[Any]]] = {
    cls.type: cls
    for cls in (
        Hello,
        Join,
        Offer,
        Answer,
        Candidate,
        Chat,
        MediaState,
        Leave,
        Ping,
        EndRoom,
        Admit,
        Deny,
        MuteParticipant,
        SetScreenShare,
        RemoveParticipant,
        RecordRequest,
        RecordConsent,
        RecordStop,
    )
}
SERVER_MESSAGES: Final[Mapping[str, type[Any]]] = {
    cls.type: cls
    for cls in (
        Welcome,
        Joined,
        ParticipantJoined,
        ParticipantLeft,
        ParticipantAway,
        ParticipantUpdated,
        Answer,
        Offer,
        ChatMessage,
        Error,
        Pong,
        Bye,
        ResumeToken,
        Waiting,
        Muted,
        ScreenShare,
        WaitingRoom,
        Redirect,
        Recording,
    )
}


# --- parsing ---------------------------------------------------------------------------------


def parse(raw: str | bytes) -> ClientMessage:
    """Parse one client → server message; raise :class:`ProtocolError` on any bad input."""
    return typing.cast(ClientMessage, _parse(raw, CLIENT_MESSAGES))


def parse_server(raw: str | bytes) -> ServerMessage:
    """Parse one server → client message (used by the load tester and the tests)."""
    return typing.cast(ServerMessage, _parse(raw, SERVER_MESSAGES))


def dump(msg: ServerMessage | ClientMessage) -> str:
    """Serialise a message to a compact JSON text frame."""
    return wire.dumps({"type": msg.type, **wire.to_json(msg)})


# Type hints resolved once at import (see fortrolig.core.wire).
_SCHEMA: Final = wire.Schema(
    (*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values(), ParticipantInfo, WaitingClient),
    max_items=MAX_ITEMS,
    text_max=TEXT_MAX,
)


def _parse(raw: str | bytes, registry: Mapping[str, type[Any]]) -> Any:
    data = wire.load_object(raw)
    kind = wire.pop_type(data)
    cls = registry.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message type {kind[:CODE_MAX]!r}", code="unknown_type")
    msg = _SCHEMA.build(cls, data, kind)
    if isinstance(msg, Hello) and msg.v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {msg.v} not supported (server speaks {PROTOCOL_VERSION})",
            code="unsupported_version",
        )
    return msg

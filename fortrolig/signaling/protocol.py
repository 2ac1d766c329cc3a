"""The WebSocket wire protocol (see docs/protocol.md). Pure: standard library only.

Every message is a JSON object with a ``type`` tag. Messages are frozen dataclasses whose field
names are the wire names; :func:`parse` reads a client message, :func:`parse_server` a server
message (for the load tester and tests), and :func:`dump` writes either. Any bad input raises
:class:`~fortrolig.core.errors.ProtocolError` with one of the codes ``bad_json``, ``bad_type``,
``unknown_type``, ``bad_field`` or ``unsupported_version``; nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

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
ICE_TRANSPORT_POLICIES: Final = ("all", "relay")  # RTCIceTransportPolicy
VERIFIED_MAX: Final = 320  # an e-mail address (RFC 5321 path limit is 256; names are shorter)


def _s(max_len: int = TEXT_MAX, *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"max_len": max_len})


def _i(lo: int, hi: int, *, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"range": (lo, hi)})


def _role() -> Any:
    return field(metadata={"choices": ROLES})


def _verification() -> Any:
    return field(metadata={"choices": VERIFICATIONS})


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
    """Whether the client's microphone and camera are on."""

    type: ClassVar[str] = "media_state"
    audio: bool
    video: bool


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


@dataclass(frozen=True, slots=True)
class WaitingClient:
    """A client in the waiting room as practitioners see it: how it proved who it is.

    ``verification`` is ``none`` for a client whose token came from a direct link rather than
    an invite; ``verified`` is the verified e-mail (email_code), the verified name (eid), a
    pseudonym (anonymous) or null (none).
    """

    id: str = _s(ID_MAX)
    verification: str = _verification()
    name: str | None = _s(NAME_MAX, default=None)
    verified: str | None = _s(VERIFIED_MAX, default=None)


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
    ice_transport_policy: str = field(default="all", metadata={"choices": ICE_TRANSPORT_POLICIES})
    resume_token: str = _s(TOKEN_MAX, default="")
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Joined:
    """Answer to ``join``: everyone already in the room (not the joiner)."""

    type: ClassVar[str] = "joined"
    participants: tuple[ParticipantInfo, ...] = ()


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
)
ServerMessage: TypeAlias = (
    Welcome
    | Joined
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdated
    | Answer
    | Offer
    | ChatMessage
    | Error
    | Pong
    | Bye
    | ResumeToken
    | Waiting
    | WaitingRoom
    | Redirect
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
    )
}
SERVER_MESSAGES: Final[Mapping[str, type[Any]]] = {
    cls.type: cls
    for cls in (
        Welcome,
        Joined,
        ParticipantJoined,
        ParticipantLeft,
        ParticipantUpdated,
        Answer,
        Offer,
        ChatMessage,
        Error,
        Pong,
        Bye,
        ResumeToken,
        Waiting,
        WaitingRoom,
        Redirect,
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
    body = {"type": msg.type, **_to_json(msg)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _parse(raw: str | bytes, registry: Mapping[str, type[Any]]) -> Any:
    data = _load_json(raw)
    kind = data.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError("message needs a string 'type'", code="bad_type")
    cls = registry.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message type {kind[:CODE_MAX]!r}", code="unknown_type")
    msg = _build(cls, data, kind)
    if isinstance(msg, Hello) and msg.v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {msg.v} not supported (server speaks {PROTOCOL_VERSION})",
            code="unsupported_version",
        )
    return msg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")  # parsers disagree on which one wins
    return result


def _load_json(raw: str | bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_pairs)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError("message is not valid UTF-8 JSON", code="bad_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("message is not a JSON object", code="bad_json")
    return data


_FieldSpec: TypeAlias = tuple[dataclasses.Field[Any], Any, bool]
"""A field, its resolved type hint, and whether it is required on the wire."""


def _field_specs(cls: type[Any]) -> tuple[_FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (f, hints[f.name], f.default is f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


# Resolved once at import: type hints are strings under ``from __future__ import annotations``.
_SPECS: Final[Mapping[type[Any], tuple[_FieldSpec, ...]]] = {
    cls: _field_specs(cls)
    for cls in (
        *CLIENT_MESSAGES.values(),
        *SERVER_MESSAGES.values(),
        ParticipantInfo,
        WaitingClient,
    )
}


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    specs = _SPECS[cls]
    known = {f.name for f, _, _ in specs}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(where, f"unknown field {unknown[0][:CODE_MAX]!r}")
    kwargs = {}
    for f, hint, required in specs:
        if f.name not in data:
            if required:
                raise _bad(where, f"missing field {f.name!r}")
            continue
        kwargs[f.name] = _check(f"{where}.{f.name}", hint, f.metadata, data[f.name])
    return cls(**kwargs)


def _bad(where: str, problem: str) -> ProtocolError:
    return ProtocolError(f"{where}: {problem}", code="bad_field")


def _check(where: str, hint: Any, meta: Mapping[str, Any], value: object) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = (arg for arg in args if arg is not type(None))
        return _check(where, inner, meta, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise _bad(where, "expected a boolean")
        return value
    if hint is int:
        return _check_int(where, meta, value)
    if hint is str:
        return _check_str(where, meta, value)
    if origin is tuple:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise _bad(where, f"expected a list of at most {MAX_ITEMS} items")
        return tuple(_check(f"{where}[]", args[0], {}, item) for item in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(where, "expected an object")
        return value
    if isinstance(value, dict) and dataclasses.is_dataclass(hint):
        return _build(typing.cast(type[Any], hint), value, where)
    raise _bad(where, "wrong type")


def _check_int(where: str, meta: Mapping[str, Any], value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "expected an integer")
    lo, hi = meta.get("range", (-(2**53), 2**53))
    if not lo <= value <= hi:
        raise _bad(where, f"must be in {lo}..{hi}")
    return value


def _check_str(where: str, meta: Mapping[str, Any], value: object) -> str:
    if not isinstance(value, str):
        raise _bad(where, "expected a string")
    max_len: int = meta.get("max_len", TEXT_MAX)
    try:
        too_long = len(value) > max_len or len(value.encode("utf-8")) > max_len
    except UnicodeEncodeError:  # a lone surrogate escaped as \ud800
        raise _bad(where, "not valid Unicode") from None
    if too_long:
        raise _bad(where, f"longer than {max_len} bytes")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise _bad(where, f"must be one of {', '.join(choices)}")
    return value


def _to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_json(item) for item in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("non-finite number in a message")
    return obj

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
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

from fortrolig.core import errors
from fortrolig.core.errors import ProtocolError

from .settings import IceServer, MediaSettings

ID_MAX: Final = 256  # room and participant ids (signaling's are 64; the channel allows more)
SDP_MAX: Final = 1 << 19  # an SDP is < 64 KiB; the channel's line limit is 1 MiB
TEXT_MAX: Final = 1024
CODE_MAX: Final = 64
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
    | GetSnapshot
    | Shutdown
)
Response: TypeAlias = Done | Published | SrtpProfile | Snapshot | Failed
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
        GetSnapshot,
        Shutdown,
    )
}
RESPONSES: Final[Mapping[str, type[Any]]] = {
    cls.type: cls for cls in (Done, Published, SrtpProfile, Snapshot, Failed)
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

R = TypeVar("R", Done, Published, SrtpProfile, Snapshot)


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
        body = {"type": inner.type, "id": message.id, **_fields(inner)}
    else:
        body = {"type": message.type, **_fields(message)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def parse_call(raw: str | bytes) -> Call:
    """What a worker reads: one request with its call id."""
    data = _load_json(raw)
    kind = _tag(data)
    cls = REQUESTS.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown request type {kind[:CODE_MAX]!r}", code="unknown_type")
    rid = _call_id(data, kind)
    return Call(rid, _build(cls, data, kind))


def call_id(raw: str | bytes) -> int | None:
    """The ``id`` of a request line that may not parse (to reply with its error), or None."""
    try:
        data = _load_json(raw)
        return _call_id(data, "request")
    except ProtocolError:
        return None


def parse_from_worker(raw: str | bytes) -> Reply | Event:
    """What the signaling side reads: a reply to one of its calls, or an event."""
    data = _load_json(raw)
    kind = _tag(data)
    if kind in EVENTS:
        event: Event = _build(EVENTS[kind], data, kind)
        return event
    cls = RESPONSES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown response type {kind[:CODE_MAX]!r}", code="unknown_type")
    rid = _call_id(data, kind)
    return Reply(rid, _build(cls, data, kind))


def dump_settings(settings: MediaSettings) -> str:
    """The settings handed to a worker on its command line."""
    return json.dumps(_fields(settings), separators=(",", ":"))


def parse_settings(raw: str | bytes) -> MediaSettings:
    """The inverse of :func:`dump_settings`."""
    settings: MediaSettings = _build(MediaSettings, _load_json(raw), "settings")
    return settings


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    return value


def _load_json(raw: str | bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ProtocolError("message is not valid UTF-8 JSON", code="bad_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("message is not a JSON object", code="bad_json")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _tag(data: dict[str, Any]) -> str:
    kind = data.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError("message needs a string 'type'", code="bad_type")
    return kind


def _call_id(data: dict[str, Any], kind: str) -> int:
    rid = data.pop("id", None)
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= _RID_MAX:
        raise _bad(kind, "'id' must be an integer in 0..2**53")
    return rid


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
    for cls in (*REQUESTS.values(), *RESPONSES.values(), *EVENTS.values(), MediaSettings, IceServer)
}


def _build(cls: type[Any], data: Mapping[str, Any], where: str) -> Any:
    specs = _SPECS[cls]
    unknown = sorted(set(data) - {f.name for f, _, _ in specs})
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
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        max_len: int = meta.get("max_len", TEXT_MAX)
        if len(value) > max_len:
            raise _bad(where, f"longer than {max_len} characters")
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(_check(f"{where}[]", args[0], {}, item) for item in value)
    if origin is dict and isinstance(value, dict):
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(typing.cast(type[Any], hint), value, where)
    raise _bad(where, f"expected {getattr(hint, '__name__', hint)}")

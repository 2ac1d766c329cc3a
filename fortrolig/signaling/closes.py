"""The one mapping from errors and endings to WebSocket close codes (docs/protocol.md).

Pure: no transport here. Two kinds of decision live in this module and nowhere else:

- **An error** the session raised (a :class:`FortroligError`): :func:`outcome_of` says whether
  an ``error`` message goes out, whether a ``bye`` follows it and which close code (if any) ends
  the connection. The transport (``ws.py``) carries that out.
- **An ending** the service decides on its own (the room ended, a practitioner denied the
  client, the client left, a newer connection replaced this one, the room moved or is served by
  another node, media failed): :class:`Ending` names it and :func:`end_connection` sends what
  precedes the close (a ``bye``) and closes with the ending's code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fortrolig.core.errors import FortroligError, Unauthenticated

from . import protocol as p

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_REDIRECT = 4307  # after `redirect`: reconnect to the owner node named there
CLOSE_AUTH = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_HANDSHAKE_TIMEOUT = 4408
CLOSE_REPLACED = 4409
CLOSE_MEDIA_FAILED = 4500
CLOSE_MOVED = 4503  # this node stopped serving the room (lease lost, drain): reconnect

# User errors that end the connection, with the close code that follows the `error` message.
FATAL_CLOSE: Mapping[str, int] = {
    "room_full": CLOSE_FORBIDDEN,
    "room_closed": CLOSE_NORMAL,  # the room ended: a normal end (docs/protocol.md)
    "room_not_found": CLOSE_FORBIDDEN,
    "unsupported_version": CLOSE_PROTOCOL,
    "denied": CLOSE_NORMAL,  # a practitioner turned this client away earlier
    "waiting_room_full": CLOSE_FORBIDDEN,
    "subscription_required": CLOSE_FORBIDDEN,
    # Refusals that may pass: 1013 "try again later"; the client keeps its token and retries.
    "no_node_in_region": CLOSE_TRY_AGAIN,
    "coordination_unavailable": CLOSE_TRY_AGAIN,
    "placement_busy": CLOSE_TRY_AGAIN,
}

# Fatal user errors after whose `error` a `bye` (with this reason) precedes the close.
BYE_BEFORE_CLOSE: Mapping[str, str] = {"room_closed": "room_ended", "denied": "denied"}


class Outbound(Protocol):
    """Where a session's messages go; ``send`` keeps order, ``close`` follows queued messages."""

    def send(self, msg: p.ServerMessage) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class Ending(enum.Enum):
    """A connection the server ends on its own initiative: (close code, ``bye`` first?)."""

    LEFT = (CLOSE_NORMAL, True)  # the client said `leave`
    ROOM_ENDED = (CLOSE_NORMAL, True)  # ended by a practitioner, the API or the subscription
    DENIED = (CLOSE_NORMAL, True)  # a practitioner turned the waiting client away
    REMOVED = (CLOSE_NORMAL, True)  # a practitioner removed the participant from the room
    REPLACED = (CLOSE_REPLACED, False)  # the same participant connected again
    MOVED = (CLOSE_MOVED, False)  # lease lost or the node drains: the room has a new owner
    REDIRECTED = (CLOSE_REDIRECT, False)  # after `redirect`: another node serves the room
    MEDIA_FAILED = (CLOSE_MEDIA_FAILED, False)  # after `error media_failed`: it may resume

    @property
    def code(self) -> int:
        """The close code of this ending."""
        return self.value[0]

    @property
    def says_bye(self) -> bool:
        """Whether a ``bye`` (its reason: the close reason) precedes the close."""
        return self.value[1]


def end_connection(out: Outbound, ending: Ending, reason: str) -> None:
    """End a connection for ``ending``: ``bye`` first where the ending has one, then close."""
    if ending.says_bye:
        out.send(p.Bye(reason=reason))
    out.close(ending.code, reason)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the transport does with an error: send ``error``? ``bye``? close with which code?"""

    send_error: bool
    close: int | None = None  # None: the connection stays open
    reason: str = ""  # the close reason (a short text; never details of a server fault)
    bye: str | None = None  # the reason of a `bye` sent between `error` and the close

    @property
    def ends(self) -> bool:
        """Whether the connection ends."""
        return self.close is not None


def outcome_of(exc: FortroligError, *, handshake: bool = False) -> Outcome:
    """How an error raised while serving a connection is answered (``handshake``: by ``hello``).

    Protocol errors: ``error`` then 1002 (or the fatal code of that error). A failed ``hello``
    authentication: ``error`` then 4401. Server faults: 1011 with no details. User errors:
    ``error``, and for the fatal ones a close (``bye`` first where the client should know why).
    """
    if exc.fault == "protocol":
        return Outcome(True, FATAL_CLOSE.get(exc.code, CLOSE_PROTOCOL), exc.code)
    if exc.fault == "server":
        return Outcome(False, CLOSE_INTERNAL, "internal error")
    if handshake and isinstance(exc, Unauthenticated):
        return Outcome(True, CLOSE_AUTH, "authentication failed")
    if exc.code in FATAL_CLOSE:
        return Outcome(True, FATAL_CLOSE[exc.code], exc.code, BYE_BEFORE_CLOSE.get(exc.code))
    return Outcome(True)

"""The request/response channel between the signaling process and a media worker.

One JSON object per line over the worker's stdin/stdout. Requests ``{"id", "op", "args"}`` get
responses ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false, "error": {...}}``; the worker
also pushes events ``{"event", ...}`` (renegotiation offers, peer state, stats). Domain errors
cross the channel by class name and code so the signaling side raises the same typed error.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from fortrolig.core import errors

from .settings import IceServer, MediaSettings

MAX_LINE = 1 << 20  # an SDP is < 64 KiB; anything near 1 MiB is a bug, not a message

_ERRORS: dict[str, type[errors.FortroligError]] = {
    cls.__name__: cls
    for cls in (
        errors.FortroligError,
        errors.ProtocolError,
        errors.BadRequest,
        errors.Unauthenticated,
        errors.Forbidden,
        errors.NotFound,
        errors.Conflict,
        errors.RateLimited,
    )
}


def encode(message: dict[str, Any]) -> bytes:
    """One line of the channel."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the other side closed the channel."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise ConnectionError("media channel line too long") from exc
    if not line:
        return None
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ConnectionError("media channel message is not an object")
    return message


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """A domain error as data; anything else becomes a generic internal error."""
    if isinstance(exc, errors.FortroligError):
        return {"cls": type(exc).__name__, "code": exc.code, "message": exc.message}
    return {"cls": "FortroligError", "code": "internal_error", "message": "media worker error"}


def error_from_wire(data: dict[str, Any]) -> errors.FortroligError:
    """The typed error a response carried."""
    cls = _ERRORS.get(str(data.get("cls")), errors.FortroligError)
    return cls(str(data.get("message", "")), code=str(data.get("code", "internal_error")))


def settings_to_json(settings: MediaSettings) -> str:
    """Settings handed to a worker on its command line."""
    return json.dumps(asdict(settings))


def settings_from_json(text: str) -> MediaSettings:
    """The inverse of :func:`settings_to_json`."""
    data = json.loads(text)
    servers = tuple(
        IceServer(urls=tuple(s["urls"]), username=s.get("username"), credential=s.get("credential"))
        for s in data.pop("ice_servers", [])
    )
    data["ice_host_addresses"] = tuple(data["ice_host_addresses"])
    return MediaSettings(ice_servers=servers, **data)

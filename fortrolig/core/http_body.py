"""The one request-body reader of every HTTP handler (signaling, invites, accounts, journal,
billing webhook).

Standard library only: it reads through the two things an aiohttp request has
(``content_length`` and ``content.read``), so ``core`` stays free of aiohttp and every package
may use it. A body is read exactly up to its limit: ``read(n)`` returns whatever has arrived,
so it is called until the end of the body; one byte beyond the limit is ``413 too_large``. A
body that ends before its ``Content-Length`` (the client went away mid-request) or is not a JSON
object is ``400 bad_json``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .errors import BadRequest, PayloadTooLarge


class BodyStream(Protocol):
    """The readable body of a request (aiohttp's ``StreamReader``)."""

    async def read(self, n: int = -1) -> bytes: ...


class HasBody(Protocol):
    """A request with a body (aiohttp's ``web.Request``)."""

    @property
    def content_length(self) -> int | None: ...

    @property
    def content(self) -> BodyStream: ...


async def read_body(request: HasBody, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (``too_large`` beyond, ``bad_json`` if cut)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge("request body too large")
    raw = bytearray()
    try:
        while len(raw) <= limit:
            chunk = await request.content.read(limit + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
    except ConnectionError:  # aiohttp: the connection was lost before the body was complete
        raise BadRequest("request body is incomplete", code="bad_json") from None
    if len(raw) > limit:
        raise PayloadTooLarge("request body too large")
    if declared is not None and len(raw) != declared:
        raise BadRequest("request body is incomplete", code="bad_json")
    return bytes(raw)


async def read_json_object(
    request: HasBody, limit: int, *, allow_empty: bool = True
) -> dict[str, Any]:
    """The JSON object body, at most ``limit`` bytes; ``bad_json`` when it is not UTF-8 JSON
    holding an object. An empty body is ``{}`` when ``allow_empty``, else ``bad_json``."""
    raw = await read_body(request, limit)
    if not raw and allow_empty:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body must be JSON", code="bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="bad_json")
    return data


def only_fields(data: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    """Refuse a body with fields outside ``allowed`` (``bad_field``, every unknown named)."""
    unknown = set(data) - allowed
    if unknown:
        raise BadRequest(f"unknown fields: {sorted(unknown)}", code="bad_field")

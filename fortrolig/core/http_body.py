"""The one request-body reader of every HTTP handler (signaling, invites, accounts, journal,
billing webhook).

Standard library only: it reads through the two things an aiohttp request has
(``content_length`` and ``read()``, which reads the whole body once and keeps it), so ``core``
stays free of aiohttp and every package may use it. The node's edge middleware reads each body
first, under the body timeout and the node's size limit, and refuses one nested deeper than
:data:`MAX_JSON_DEPTH` before any handler runs; a handler's own read then gets the kept bytes
and applies its route's limit. More than the limit is ``413 too_large``. A body that ends before
its ``Content-Length`` (the client went away mid-request), is nested too deeply or is not a JSON
object is ``400 bad_json``.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Final, Protocol

from .errors import BadRequest, PayloadTooLarge

MAX_JSON_DEPTH: Final = 32
"""Arrays and objects nested deeper than this are refused (ours nest 3 deep at most)."""
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class HasBody(Protocol):
    """A request with a body (aiohttp's ``web.Request``)."""

    @property
    def content_length(self) -> int | None: ...

    async def read(self) -> bytes: ...


def json_depth(raw: bytes) -> int:
    """How deeply ``raw``'s arrays and objects nest (brackets inside strings do not count).

    Linear and without recursion, so it runs before any parser: strings go first (one regular
    expression), then every byte but the four brackets, then a running sum.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(_STEP[b] for b in brackets), default=0)


def check_json_depth(raw: bytes) -> None:
    """``bad_json`` when ``raw`` nests deeper than :data:`MAX_JSON_DEPTH`."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels", code="bad_json")


async def read_body(request: HasBody, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (``too_large`` beyond, ``bad_json`` if cut)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge("request body too large")
    try:
        raw = await request.read()
    except ConnectionError:  # aiohttp: the connection was lost before the body was complete
        raise BadRequest("request body is incomplete", code="bad_json") from None
    if len(raw) > limit:
        raise PayloadTooLarge("request body too large")
    if declared is not None and len(raw) != declared:
        raise BadRequest("request body is incomplete", code="bad_json")
    return raw


def loads_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object: depth checked first, then parsed (``bad_json`` otherwise)."""
    check_json_depth(raw)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body must be JSON", code="bad_json") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", code="bad_json")
    return data


async def read_json_object(
    request: HasBody, limit: int, *, allow_empty: bool = True
) -> dict[str, Any]:
    """The JSON object body, at most ``limit`` bytes; ``bad_json`` when it is not UTF-8 JSON
    holding an object. An empty body is ``{}`` when ``allow_empty``, else ``bad_json``."""
    raw = await read_body(request, limit)
    if not raw and allow_empty:
        return {}
    return loads_object(raw)


def only_fields(data: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    """Refuse a body with fields outside ``allowed`` (``bad_field``, every unknown named)."""
    unknown = set(data) - allowed
    if unknown:
        raise BadRequest(f"unknown fields: {sorted(unknown)}", code="bad_field")

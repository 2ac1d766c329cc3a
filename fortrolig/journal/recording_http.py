"""HTTP API of recordings in the journal: list, playback URL, and the playback itself.

``GET  /api/journal/clients/{client_id}/recordings``                     the client's recordings
``POST /api/journal/clients/{client_id}/recordings/{rid}/parts/{n}/playback``  a playback URL
``GET|HEAD /api/recordings/play/{ticket}``                               the decrypted WebM

The first two are journal routes (Bearer token, subscription gate: export access). The playback
URL is a capability: a ``<video>`` element cannot send the Bearer header, so the sealed ticket in
the path is the credential (issued only to the owner, for one part, for a few hours, and the
playback is audited when it is issued). Because no token comes with it, the handler applies the
subscription rule itself (``may_read``: export-only still plays, suspended does not).

Playback decrypts on the fly and honours one byte range (RFC 9110 §14): ``206`` with
``Content-Range``, ``416`` for a range past the end, and the whole file (``200``) for several
ranges or a malformed header — what every browser's media element handles.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fortrolig.core.errors import BadRequest, Unauthenticated
from fortrolig.core.principal import Principal
from fortrolig.journal.model import iso_from_micros
from fortrolig.journal.recording_service import PartReader
from fortrolig.journal.recordings_model import Recording
from fortrolig.journal.service import JournalService

PLAY_PREFIX = "/api/recordings/play/"
"""Capability URLs: the authentication middleware lets them through without a token."""
_NO_STORE = {"Cache-Control": "no-store"}
_WINDOW = 4 * 1024 * 1024  # plaintext decrypted and sent per step
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

PrincipalLookup = Callable[[web.Request], Principal | None]
ReadCheck = Callable[[web.Request, str], Awaitable[None]]
"""Raises (a typed error) unless the practitioner may read their journal now."""


def recording_json(recording: Recording) -> dict[str, Any]:
    """A recording as JSON (what the notes panel lists)."""
    return {
        "id": recording.id,
        "room_id": recording.room_id,
        "started_at": iso_from_micros(recording.started_us),
        "ended_at": None if recording.ended_us is None else iso_from_micros(recording.ended_us),
        "state": recording.state,
        "reason": recording.reason,
        "duration_s": round(recording.duration_s, 3),
        "consented_by": list(recording.consented_by),
        "parts": [
            {
                "index": p.index,
                "starts_at_s": round(p.starts_at_s, 3),
                "duration_s": round(p.duration_s, 3),
                "bytes": p.size,
                "tracks": p.tracks,
            }
            for p in recording.parts
        ],
    }


def recording_routes(
    service_key: web.AppKey[JournalService], principal: PrincipalLookup, may_read: ReadCheck
) -> list[web.RouteDef]:
    """The recording routes; ``may_read`` applies the subscription rule to playback."""
    h = _Handlers(service_key, principal, may_read)
    base = "/api/journal/clients/{client_id}/recordings"
    return [
        web.get(base, h.list_recordings),
        web.post(base + "/{recording_id}/parts/{index}/playback", h.playback),
        web.get(PLAY_PREFIX + "{ticket}", h.play),
    ]


class _Handlers:
    def __init__(
        self, key: web.AppKey[JournalService], principal: PrincipalLookup, may_read: ReadCheck
    ) -> None:
        self._key = key
        self._principal = principal
        self._may_read = may_read

    def _svc(self, request: web.Request) -> JournalService:
        return request.app[self._key]

    def _who(self, request: web.Request) -> Principal:
        principal = self._principal(request)
        if principal is None:
            raise Unauthenticated("authentication required")
        return principal

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        recordings = await self._svc(request).recordings.list_recordings(
            self._who(request), request.match_info["client_id"]
        )
        return web.json_response(
            {"recordings": [recording_json(r) for r in recordings]}, headers=_NO_STORE
        )

    async def playback(self, request: web.Request) -> web.StreamResponse:
        who = self._who(request)
        index = request.match_info["index"]
        if not index.isdigit() or len(index) > 6:
            raise BadRequest("a part index is a small non-negative integer", code="bad_field")
        if request.can_read_body and (await request.read()).strip() not in (b"", b"{}"):
            raise BadRequest("this request takes no fields", code="unknown_field")
        ticket = await self._svc(request).recordings.playback(
            who, request.match_info["client_id"], request.match_info["recording_id"], int(index)
        )
        body = {"url": PLAY_PREFIX + ticket.token, "expires_at": iso_from_micros(ticket.expires_us)}
        return web.json_response(body, status=201, headers=_NO_STORE)

    async def play(self, request: web.Request) -> web.StreamResponse:
        reader = await self._svc(request).recordings.open_ticket(request.match_info["ticket"])
        await self._may_read(request, reader.practitioner_id)
        try:
            span = byte_range(request.headers.get("Range"), reader.size)
        except RangeNotSatisfiable:
            headers = {**_NO_STORE, "Content-Range": f"bytes */{reader.size}"}
            return web.Response(status=416, headers=headers)
        headers = {
            **_NO_STORE,
            "Accept-Ranges": "bytes",
            "Content-Type": "video/webm",
            "X-Content-Type-Options": "nosniff",
        }
        if span is None:
            start, stop, status = 0, reader.size, 200
        else:
            start, stop = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{reader.size}"
        if request.method != "HEAD" and stop > start:
            # Decrypt the first window before answering: a tampered file fails with a clear
            # error instead of a 200 that breaks off.
            first = await reader.read(start, min(_WINDOW, stop - start))
        else:
            first = b""
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        await response.prepare(request)
        if request.method != "HEAD":
            await _send(response, reader, start + len(first), stop, first)
        await response.write_eof()
        return response


async def _send(
    response: web.StreamResponse, reader: PartReader, offset: int, stop: int, first: bytes
) -> None:
    await response.write(first)
    while offset < stop:
        data = await reader.read(offset, min(_WINDOW, stop - offset))
        if not data:
            break
        await response.write(data)
        offset += len(data)


class RangeNotSatisfiable(BadRequest):
    """A byte range that starts past the end of the file."""

    code = "range_not_satisfiable"
    status = 416


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, stop)`` a Range header asks for, or None for the whole
    file (no header, several ranges, or a header this server ignores, as RFC 9110 allows).
    :class:`RangeNotSatisfiable` when it starts at or past ``size``."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # another unit, several ranges, garbage: send everything
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes */{size}")
        return max(0, size - length), size
    start = int(first)
    stop = size if last == "" else min(size, int(last) + 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"bytes */{size}")
    return start, stop

"""HTTP API of the journal (aiohttp routes); authorization happens in the service, not here.

Authentication middleware elsewhere puts a :class:`~fortrolig.core.principal.Principal` into
``request["fortrolig.principal"]``. Handlers translate JSON to service calls and map
:class:`~fortrolig.core.errors.FortroligError` to ``{"error": {"code", "message"}}`` with the
error's status; server faults get a generic message (details only in the log). Every response
carries ``Cache-Control: no-store`` because it is health data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fortrolig.core.errors import BadRequest, FortroligError, Unauthenticated
from fortrolig.core.principal import PRINCIPAL_KEY, Principal
from fortrolig.journal.model import Client, Journal, Note, iso_from_micros
from fortrolig.journal.service import JournalService

log = logging.getLogger(__name__)
PREFIX = "/api/journal"
_NO_STORE = {"Cache-Control": "no-store"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def journal_routes(service_key: web.AppKey[JournalService]) -> list[web.RouteDef]:
    """The journal's routes; the service is looked up as ``request.app[service_key]``."""
    h = _Handlers(service_key)
    client = PREFIX + "/clients/{client_id}"
    return [
        web.get(PREFIX + "/clients", _mapped(h.list_clients)),
        web.post(PREFIX + "/clients", _mapped(h.create_client)),
        web.get(client, _mapped(h.read_journal)),
        web.post(client + "/notes", _mapped(h.add_note)),
        web.post(client + "/notes/{note_id}/addenda", _mapped(h.add_addendum)),
        web.put(client + "/hold", _mapped(h.set_hold)),
        web.get(client + "/export.json", _mapped(h.export_json)),
        web.get(client + "/export.pdf", _mapped(h.export_pdf)),
        web.get(PREFIX + "/export.zip", _mapped(h.export_all)),
    ]


def _mapped(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except FortroligError as exc:
            return error_response(exc)

    return wrapper


def error_response(exc: FortroligError) -> web.Response:
    """The JSON error body for a domain error; server faults hide their details."""
    message = exc.message
    if exc.fault == "server":
        log.error("journal request failed: %r", exc)
        message = "internal error"
    body = {"error": {"code": exc.code, "message": message}}
    return web.json_response(body, status=exc.status, headers=_NO_STORE)


def _principal(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication required")
    return principal


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("request body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise BadRequest(f"field {name!r} must be a {kind.__name__}")
    return value


def client_json(client: Client) -> dict[str, Any]:
    """A client as JSON."""
    return {
        "id": client.id,
        "name": client.name,
        "contact": client.contact,
        "created_at": iso_from_micros(client.created_us),
        "hold": client.hold,
    }


def note_json(note: Note) -> dict[str, Any]:
    """A note or addendum as JSON."""
    return {
        "id": note.id,
        "author": note.author,
        "created_at": iso_from_micros(note.created_us),
        "consultation_id": note.consultation_id,
        "corrects": note.corrects,
        "text": note.text,
    }


def journal_json(journal: Journal) -> dict[str, Any]:
    """A journal as JSON."""
    return {"client": client_json(journal.client), "notes": [note_json(n) for n in journal.notes]}


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=_NO_STORE)


def _download(data: bytes, content_type: str, filename: str) -> web.Response:
    headers = {**_NO_STORE, "Content-Disposition": f'attachment; filename="{filename}"'}
    return web.Response(body=data, content_type=content_type, headers=headers)


class _Handlers:
    def __init__(self, key: web.AppKey[JournalService]) -> None:
        self._key = key

    def _svc(self, request: web.Request) -> JournalService:
        return request.app[self._key]

    async def list_clients(self, request: web.Request) -> web.StreamResponse:
        clients = await self._svc(request).list_clients(_principal(request))
        return _json({"clients": [client_json(c) for c in clients]})

    async def create_client(self, request: web.Request) -> web.StreamResponse:
        principal = _principal(request)
        body = await _body(request)
        client = await self._svc(request).create_client(
            principal,
            _field(body, "name", str),
            _field(body, "contact", str, required=False),
            anonymous=bool(_field(body, "anonymous", bool, required=False)),
        )
        return _json(client_json(client), status=201)

    async def read_journal(self, request: web.Request) -> web.StreamResponse:
        purpose = request.query.get("purpose", "care")
        journal = await self._svc(request).read_journal(
            _principal(request), request.match_info["client_id"], purpose
        )
        return _json(journal_json(journal))

    async def add_note(self, request: web.Request) -> web.StreamResponse:
        principal = _principal(request)
        body = await _body(request)
        note = await self._svc(request).add_note(
            principal,
            request.match_info["client_id"],
            _field(body, "text", str),
            _field(body, "consultation_id", str, required=False),
        )
        return _json(note_json(note), status=201)

    async def add_addendum(self, request: web.Request) -> web.StreamResponse:
        principal = _principal(request)
        body = await _body(request)
        note = await self._svc(request).add_addendum(
            principal,
            request.match_info["client_id"],
            request.match_info["note_id"],
            _field(body, "text", str),
        )
        return _json(note_json(note), status=201)

    async def set_hold(self, request: web.Request) -> web.StreamResponse:
        principal = _principal(request)
        body = await _body(request)
        hold = _field(body, "hold", bool)
        await self._svc(request).set_hold(
            principal, request.match_info["client_id"], hold, _field(body, "reason", str)
        )
        return _json({"hold": hold})

    async def export_json(self, request: web.Request) -> web.StreamResponse:
        client_id = request.match_info["client_id"]
        data = await self._svc(request).export_json(_principal(request), client_id)
        return _download(data, "application/json", f"journal-{client_id}.json")

    async def export_pdf(self, request: web.Request) -> web.StreamResponse:
        client_id = request.match_info["client_id"]
        data = await self._svc(request).export_pdf(_principal(request), client_id)
        return _download(data, "application/pdf", f"journal-{client_id}.pdf")

    async def export_all(self, request: web.Request) -> web.StreamResponse:
        principal = _principal(request)
        chunks = self._svc(request).export_all(principal)
        # Fetch the first chunk before committing to 200, so authorization errors still map.
        first = await anext(chunks)
        response = web.StreamResponse(
            headers={
                **_NO_STORE,
                "Content-Type": "application/zip",
                "Content-Disposition": 'attachment; filename="journals.zip"',
            }
        )
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            if chunk:
                await response.write(chunk)
        await response.write_eof()
        return response

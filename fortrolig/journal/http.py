"""HTTP API of the journal (aiohttp routes); authorization happens in the service, not here.

The composition root passes a function that returns the authenticated
:class:`~fortrolig.core.principal.Principal` of a request (the authentication middleware lives
elsewhere and this package must not import it). Handlers translate JSON to service calls and raise
:class:`~fortrolig.core.errors.FortroligError`; the application's one error middleware maps them
to ``{"error": {"code", "message"}}``. Successful responses carry ``Cache-Control: no-store``
because they are health data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from fortrolig.core.errors import BadRequest, Unauthenticated
from fortrolig.core.http_body import only_fields, read_json_object
from fortrolig.core.principal import Principal
from fortrolig.journal.model import Client, Journal, Note, iso_from_micros
from fortrolig.journal.service import JournalService

log = logging.getLogger(__name__)
PREFIX = "/api/journal"
MAX_BODY = 2 * 1024 * 1024
"""A note at the 100,000-character limit is at most ~1.2 MB of JSON even fully \\u-escaped."""
_NO_STORE = {"Cache-Control": "no-store"}

PrincipalLookup = Callable[[web.Request], Principal | None]
"""Returns the request's authenticated caller, or None when there is none."""


def journal_routes(
    service_key: web.AppKey[JournalService], principal: PrincipalLookup
) -> list[web.RouteDef]:
    """The journal's routes; the service is ``request.app[service_key]``.

    ``principal`` gives the caller the authentication middleware verified (None: 401).
    """
    h = _Handlers(service_key, principal)
    client = PREFIX + "/clients/{client_id}"
    return [
        web.get(PREFIX + "/clients", h.list_clients),
        web.post(PREFIX + "/clients", h.create_client),
        web.get(client, h.read_journal),
        web.post(client + "/notes", h.add_note),
        web.post(client + "/notes/{note_id}/addenda", h.add_addendum),
        web.put(client + "/hold", h.set_hold),
        web.get(client + "/hold", h.hold_history),
        web.get(client + "/export.json", h.export_json),
        web.get(client + "/export.pdf", h.export_pdf),
        web.get(PREFIX + "/export.zip", h.export_all),
    ]


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object body, read with the journal's own size limit; unknown fields refused."""
    body = await read_json_object(request, MAX_BODY, allow_empty=False)
    only_fields(body, allowed)
    return body


_CLIENT_FIELDS = frozenset({"name", "contact", "anonymous"})
_NOTE_FIELDS = frozenset({"text", "consultation_id"})
_ADDENDUM_FIELDS = frozenset({"text"})
_HOLD_FIELDS = frozenset({"hold", "reason"})


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise BadRequest(f"field {name!r} must be a {kind.__name__}", code="bad_field")
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
    def __init__(self, key: web.AppKey[JournalService], principal: PrincipalLookup) -> None:
        self._key = key
        self._principal = principal

    def _svc(self, request: web.Request) -> JournalService:
        return request.app[self._key]

    def _who(self, request: web.Request) -> Principal:
        principal = self._principal(request)
        if principal is None:
            raise Unauthenticated("authentication required")
        return principal

    async def list_clients(self, request: web.Request) -> web.StreamResponse:
        clients = await self._svc(request).list_clients(self._who(request))
        return _json({"clients": [client_json(c) for c in clients]})

    async def create_client(self, request: web.Request) -> web.StreamResponse:
        principal = self._who(request)
        body = await _body(request, _CLIENT_FIELDS)
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
            self._who(request), request.match_info["client_id"], purpose
        )
        return _json(journal_json(journal))

    async def add_note(self, request: web.Request) -> web.StreamResponse:
        principal = self._who(request)
        body = await _body(request, _NOTE_FIELDS)
        note = await self._svc(request).add_note(
            principal,
            request.match_info["client_id"],
            _field(body, "text", str),
            _field(body, "consultation_id", str, required=False),
        )
        return _json(note_json(note), status=201)

    async def add_addendum(self, request: web.Request) -> web.StreamResponse:
        principal = self._who(request)
        body = await _body(request, _ADDENDUM_FIELDS)
        note = await self._svc(request).add_addendum(
            principal,
            request.match_info["client_id"],
            request.match_info["note_id"],
            _field(body, "text", str),
        )
        return _json(note_json(note), status=201)

    async def set_hold(self, request: web.Request) -> web.StreamResponse:
        principal = self._who(request)
        body = await _body(request, _HOLD_FIELDS)
        hold = _field(body, "hold", bool)
        await self._svc(request).set_hold(
            principal,
            request.match_info["client_id"],
            hold,
            _field(body, "reason", str, required=False),
        )
        return _json({"hold": hold})

    async def hold_history(self, request: web.Request) -> web.StreamResponse:
        changes = await self._svc(request).hold_history(
            self._who(request),
            request.match_info["client_id"],
            request.query.get("purpose", "care"),
        )
        return _json(
            {
                "changes": [
                    {"at_us": c.at_us, "actor": c.actor, "hold": c.hold, "reason": c.reason}
                    for c in changes
                ]
            }
        )

    async def export_json(self, request: web.Request) -> web.StreamResponse:
        client_id = request.match_info["client_id"]
        data = await self._svc(request).export_json(self._who(request), client_id)
        return _download(data, "application/json", f"journal-{client_id}.json")

    async def export_pdf(self, request: web.Request) -> web.StreamResponse:
        client_id = request.match_info["client_id"]
        data = await self._svc(request).export_pdf(self._who(request), client_id)
        return _download(data, "application/pdf", f"journal-{client_id}.pdf")

    async def export_all(self, request: web.Request) -> web.StreamResponse:
        principal = self._who(request)
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
        try:
            await response.write(first)
            async for chunk in chunks:
                if chunk:
                    await response.write(chunk)
        except ConnectionError:
            raise  # the client went away
        except Exception:
            # The status line is out, so no error body can follow. Cut the connection (no final
            # chunk) so that a partial archive can never be taken for a complete one.
            log.exception("export.zip for %s failed after the response started", principal.subject)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

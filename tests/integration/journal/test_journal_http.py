"""The journal HTTP API on a real aiohttp server (SQLite), with a stand-in auth middleware.

Errors go through the application's one error middleware (``signaling.http.error_middleware``),
as in the node; the node itself is tested in tests/integration/journal/test_journal_node.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import Principal
from fortrolig.journal.export import read_zip
from fortrolig.journal.factory import default_database_url, open_journal, retention_loop
from fortrolig.journal.http import MAX_BODY, journal_routes
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import sqlite_path
from fortrolig.signaling.http import error_middleware

SERVICE = web.AppKey("journal", JournalService)
WHO = web.RequestKey("test.principal", Principal)


@web.middleware
async def fake_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Trusts X-Test-User (and X-Test-Role); the real middleware verifies a JWT."""
    user = request.headers.get("X-Test-User")
    if user:
        request[WHO] = Principal(user, request.headers.get("X-Test-Role", "practitioner"))
    return await handler(request)


Client = TestClient[web.Request, web.Application]


def journal_app(service: JournalService) -> web.Application:
    app = web.Application(middlewares=[error_middleware, fake_auth])
    app[SERVICE] = service
    app.add_routes(journal_routes(SERVICE, lambda request: request.get(WHO)))
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    service = await open_journal(tmp_path, clock=FakeClock())
    async with TestClient(TestServer(journal_app(service))) as test_client:
        yield test_client
    await service.close()


def flip_note_bits(data_dir: Path, client_id: str) -> None:
    """Flip one bit in every note of a client, as someone with write access to the file could."""
    with sqlite3.connect(sqlite_path(default_database_url(data_dir)), isolation_level=None) as db:
        db.execute("DROP TRIGGER notes_no_update")
        rows = db.execute("SELECT id, ciphertext FROM notes WHERE client_id = ?", (client_id,))
        for note_id, blob in rows.fetchall():
            flipped = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
            db.execute("UPDATE notes SET ciphertext = ? WHERE id = ?", (flipped, note_id))
    db.close()


async def error_of(resp: aiohttp.ClientResponse) -> tuple[int, str, str]:
    """Status, code and message of the documented error body (nothing else in it)."""
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return resp.status, body["error"]["code"], body["error"]["message"]


def _as(user: str) -> dict[str, str]:
    return {"X-Test-User": user}


async def test_practitioner_flow(client: Client) -> None:
    resp = await client.post(
        "/api/journal/clients", json={"name": "Åse", "contact": "a@x.dk"}, headers=_as("p1")
    )
    assert resp.status == 201 and resp.headers["Cache-Control"] == "no-store"
    cid = (await resp.json())["id"]
    resp = await client.post(
        f"/api/journal/clients/{cid}/notes", json={"text": "Første"}, headers=_as("p1")
    )
    note = await resp.json()
    resp = await client.post(
        f"/api/journal/clients/{cid}/notes/{note['id']}/addenda",
        json={"text": "Rettet"},
        headers=_as("p1"),
    )
    assert resp.status == 201
    journal = await (await client.get(f"/api/journal/clients/{cid}", headers=_as("p1"))).json()
    assert [n["text"] for n in journal["notes"]] == ["Første", "Rettet"]
    assert journal["notes"][1]["corrects"] == note["id"]
    listing = await (await client.get("/api/journal/clients", headers=_as("p1"))).json()
    assert [c["name"] for c in listing["clients"]] == ["Åse"]
    pdf = await client.get(f"/api/journal/clients/{cid}/export.pdf", headers=_as("p1"))
    assert pdf.content_type == "application/pdf" and (await pdf.read()).startswith(b"%PDF")
    exported = await client.get(f"/api/journal/clients/{cid}/export.json", headers=_as("p1"))
    assert (await exported.json())["notes"][0]["text"] == "Første"
    zipped = await client.get("/api/journal/export.zip", headers=_as("p1"))
    assert sorted(read_zip(await zipped.read())) == [f"{cid}.json", f"{cid}.pdf"]


async def test_errors_are_typed_and_isolated(
    client: Client,
) -> None:
    resp = await client.get("/api/journal/clients")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthenticated"
    resp = await client.post("/api/journal/clients", json={"name": "X"}, headers=_as("p1"))
    cid = (await resp.json())["id"]
    resp = await client.get(f"/api/journal/clients/{cid}", headers=_as("p2"))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "client_not_found"
    resp = await client.post(
        f"/api/journal/clients/{cid}/notes", json={"text": ""}, headers=_as("p1")
    )
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_entry"
    resp = await client.post("/api/journal/clients", data=b"{", headers=_as("p1"))
    assert resp.status == 400
    resp = await client.post(
        "/api/journal/clients", json={"name": "A", "anonymous": True}, headers=_as("p1")
    )
    assert (await resp.json())["error"]["code"] == "anonymous_client"
    assert isinstance(resp, aiohttp.ClientResponse)


async def test_bad_bodies_and_roles(client: Client) -> None:
    p1 = _as("p1")
    resp = await client.post("/api/journal/clients", json={"name": "A"}, headers=p1)
    cid = (await resp.json())["id"]
    notes = f"/api/journal/clients/{cid}/notes"
    assert (await error_of(await client.post(notes, data=b"{", headers=p1)))[:2] == (
        400,
        "bad_json",
    )
    assert (await error_of(await client.post(notes, json=["x"], headers=p1)))[1] == "bad_json"
    resp = await client.post(notes, json={"text": "x", "txet": "y"}, headers=p1)
    assert (await error_of(resp))[:2] == (400, "bad_field")
    resp = await client.post(notes, json={"text": 5}, headers=p1)
    assert (await error_of(resp))[:2] == (400, "bad_field")
    resp = await client.post(notes, data=io.BytesIO(b" " * (MAX_BODY + 1)), headers=p1)
    assert (await error_of(resp))[:2] == (413, "too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the read limit holds
        for _ in range(MAX_BODY // 65536 + 1):
            yield b" " * 65536

    resp = await client.post(notes, data=chunked(), headers=p1)
    assert (await error_of(resp))[:2] == (413, "too_large")
    resp = await client.get("/api/journal/clients", headers={**p1, "X-Test-Role": "client"})
    assert (await error_of(resp))[:2] == (403, "journal_forbidden")
    # A note at the domain's limit is far above the node's 64 KiB default body limit.
    long_text = "æ" * 100_000
    resp = await client.post(notes, json={"text": long_text}, headers=p1)
    assert resp.status == 201, await resp.text()
    journal = await (await client.get(f"/api/journal/clients/{cid}", headers=p1)).json()
    assert [n["text"] for n in journal["notes"]] == [long_text]


async def test_body_arriving_in_pieces(client: Client) -> None:
    p1 = _as("p1")
    cid = (
        await (await client.post("/api/journal/clients", json={"name": "A"}, headers=p1)).json()
    )["id"]
    body = json.dumps({"text": "ø" * 50_000}).encode()

    async def slowly() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 30_000):
            yield body[start : start + 30_000]
            await asyncio.sleep(0.01)

    resp = await client.post(f"/api/journal/clients/{cid}/notes", data=slowly(), headers=p1)
    assert resp.status == 201, await resp.text()


async def test_server_faults_keep_their_code_but_hide_details(
    client: Client, tmp_path: Path
) -> None:
    p1 = _as("p1")
    cid = (
        await (await client.post("/api/journal/clients", json={"name": "A"}, headers=p1)).json()
    )["id"]
    await client.post(f"/api/journal/clients/{cid}/notes", json={"text": "t"}, headers=p1)
    flip_note_bits(tmp_path, cid)
    resp = await client.get(f"/api/journal/clients/{cid}", headers=p1)
    assert await error_of(resp) == (500, "integrity_error", "internal error")
    assert "t" not in (await resp.text()).replace("internal", "").replace("integrity", "")


async def test_export_zip_failing_midway_cuts_the_connection(tmp_path: Path) -> None:
    clock = FakeClock()
    service = await open_journal(tmp_path, clock=clock)
    who = Principal("p1", "practitioner")
    try:
        first = await service.create_client(who, "Først")
        clock.advance(1)
        second = await service.create_client(who, "Anden")
        for c in (first, second):
            await service.add_note(who, c.id, "note")
        flip_note_bits(tmp_path, second.id)
        async with TestClient(TestServer(journal_app(service))) as test_client:
            resp = await test_client.get("/api/journal/export.zip", headers=_as("p1"))
            assert resp.status == 200  # the first journal was fine when the response started
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
            # The node keeps serving.
            resp = await test_client.get("/api/journal/clients", headers=_as("p1"))
            assert resp.status == 200
    finally:
        await service.close()


async def test_retention_loop_runs_and_cancels(tmp_path: Path) -> None:
    clock = FakeClock()
    service = await open_journal(tmp_path, clock=clock)
    try:
        who = Principal("p1", "practitioner")
        await service.create_client(who, "Gammel")
        clock.advance(6 * 366 * 86_400)
        task = asyncio.create_task(retention_loop(service, interval_s=0.01))
        for _ in range(100):
            if not await service.list_clients(who):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await service.list_clients(who) == []
    finally:
        await service.close()

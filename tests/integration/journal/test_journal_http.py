"""The journal HTTP API on a real aiohttp server (SQLite), with a stand-in auth middleware."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.core.clock import FakeClock
from fortrolig.core.principal import PRINCIPAL_KEY, Principal
from fortrolig.journal.export import read_zip
from fortrolig.journal.factory import open_journal, retention_loop
from fortrolig.journal.http import journal_routes
from fortrolig.journal.service import JournalService

SERVICE = web.AppKey("journal", JournalService)


@web.middleware
async def fake_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Trusts an X-Test-User header; the real middleware verifies a JWT."""
    user = request.headers.get("X-Test-User")
    if user:
        # The agreed contract is the string key; aiohttp 3.14 prefers RequestKey and warns.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[PRINCIPAL_KEY] = Principal(user, "practitioner")
    return await handler(request)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    service = await open_journal(tmp_path, clock=FakeClock())
    app = web.Application(middlewares=[fake_auth])
    app[SERVICE] = service
    app.add_routes(journal_routes(SERVICE))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await service.close()


def _as(user: str) -> dict[str, str]:
    return {"X-Test-User": user}


async def test_practitioner_flow(client: TestClient[web.Request, web.Application]) -> None:
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
    client: TestClient[web.Request, web.Application],
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

"""The recording HTTP API on a real aiohttp server (SQLite): list, playback URL, byte ranges.

Authentication is the stand-in middleware of test_journal_http.py; the playback URL needs none
(its sealed ticket is the credential), and the subscription rule is the injected check.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.core.clock import FakeClock
from fortrolig.core.errors import Forbidden
from fortrolig.core.ids import new_id
from fortrolig.core.principal import Principal
from fortrolig.journal.factory import open_journal
from fortrolig.journal.recording_http import (
    RangeNotSatisfiable,
    byte_range,
    recording_routes,
)
from fortrolig.journal.recordings_model import RecordingPartInfo
from fortrolig.journal.service import JournalService
from fortrolig.recording.keys import file_associated_data
from fortrolig.recording.stream_aead import encrypt
from fortrolig.signaling.http import error_middleware
from tests.integration.journal.test_journal_http import SERVICE, WHO, Client, error_of, fake_auth

PLAIN = os.urandom(700_000)
ALICE = {"X-Test-User": "prac_alice"}
SUSPENDED: set[str] = set()


async def may_read(request: web.Request, practitioner_id: str) -> None:
    if practitioner_id in SUSPENDED:
        raise Forbidden("suspended", code="subscription_suspended")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, str, str]]:
    service = await open_journal(tmp_path, clock=FakeClock())
    app = web.Application(middlewares=[error_middleware, fake_auth])
    app[SERVICE] = service
    app.add_routes(recording_routes(SERVICE, lambda request: request.get(WHO), may_read))
    client_id, rid = await _stored(service, tmp_path)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, client_id, rid
    SUSPENDED.clear()
    await service.close()


async def _stored(service: JournalService, tmp_path: Path) -> tuple[str, str]:
    alice = Principal("prac_alice", "practitioner")
    client = await service.create_client(alice, "Anna", None)
    rid = new_id("rec")
    key = await service.recordings.begin(alice.subject, client.id, "room_1", rid, ("Dr. H",))
    path = tmp_path / "part.enc"
    path.write_bytes(encrypt(key, PLAIN, file_associated_data(rid, 0)))
    await service.recordings.add_part(rid, RecordingPartInfo(0, 0.0, 3.0, 90, 2), path)
    await service.recordings.finish(rid, "stopped", ("Dr. H",))
    return client.id, rid


async def _url(client: Client, client_id: str, rid: str) -> str:
    path = f"/api/journal/clients/{client_id}/recordings/{rid}/parts/0/playback"
    resp = await client.post(path, headers=ALICE, json={})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == {"url", "expires_at"}
    return str(body["url"])


async def test_list_then_play_with_ranges(setup: tuple[Client, str, str]) -> None:
    client, client_id, rid = setup
    resp = await client.get(f"/api/journal/clients/{client_id}/recordings", headers=ALICE)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    (listed,) = (await resp.json())["recordings"]
    assert listed["id"] == rid and listed["state"] == "finished"
    assert listed["parts"][0]["bytes"] == len(PLAIN)
    url = await _url(client, client_id, rid)

    whole = await client.get(url)  # no token: the ticket is the credential
    assert whole.status == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "video/webm"
    assert await whole.read() == PLAIN

    cases = {
        "bytes=0-99": (0, 100),
        "bytes=300000-300009": (300_000, 300_010),
        "bytes=699990-": (699_990, 700_000),
        "bytes=-10": (699_990, 700_000),
        "bytes=699995-800000": (699_995, 700_000),
    }
    for header, (start, stop) in cases.items():
        part = await client.get(url, headers={"Range": header})
        assert part.status == 206, header
        assert part.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{len(PLAIN)}"
        assert await part.read() == PLAIN[start:stop], header

    past = await client.get(url, headers={"Range": "bytes=700000-"})
    assert past.status == 416 and past.headers["Content-Range"] == f"bytes */{len(PLAIN)}"
    several = await client.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert several.status == 200 and len(await several.read()) == len(PLAIN)
    head = await client.head(url, headers={"Range": "bytes=10-19"})
    assert head.status == 206 and head.headers["Content-Length"] == "10"


async def test_bad_requests_get_typed_errors(setup: tuple[Client, str, str]) -> None:
    client, client_id, rid = setup
    base = f"/api/journal/clients/{client_id}/recordings"
    assert (await error_of(await client.get(base)))[:2] == (401, "unauthenticated")
    bad = await client.post(f"{base}/{rid}/parts/x/playback", headers=ALICE, json={})
    assert (await error_of(bad))[:2] == (400, "bad_field")
    extra = await client.post(f"{base}/{rid}/parts/0/playback", headers=ALICE, json={"a": 1})
    assert (await error_of(extra))[:2] == (400, "unknown_field")
    missing = await client.post(f"{base}/{rid}/parts/3/playback", headers=ALICE, json={})
    assert (await error_of(missing))[:2] == (404, "recording_not_found")
    forged = await client.get("/api/recordings/play/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert (await error_of(forged))[:2] == (403, "playback_ticket_invalid")
    bob = {"X-Test-User": "prac_bob"}
    other = await client.post(f"{base}/{rid}/parts/0/playback", headers=bob, json={})
    assert other.status in (403, 404)


async def test_a_suspended_practice_cannot_play(setup: tuple[Client, str, str]) -> None:
    client, client_id, rid = setup
    url = await _url(client, client_id, rid)
    SUSPENDED.add("prac_alice")
    resp = await client.get(url, headers={"Range": "bytes=0-9"})
    assert (await error_of(resp))[:2] == (403, "subscription_suspended")


def test_byte_range_rules() -> None:
    assert byte_range(None, 100) is None
    assert byte_range("bytes=0-", 100) == (0, 100)
    assert byte_range("bytes=5-9", 100) == (5, 10)
    assert byte_range("bytes=-200", 100) == (0, 100)
    assert byte_range("bytes=9-5", 100) is None  # invalid: ignored, whole file
    assert byte_range("items=0-5", 100) is None
    assert byte_range("bytes=-", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=100-", 100)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=-0", 100)

"""A consultation recorded through a real node, from the consent messages to the playback URL.

Two aiortc participants (fortrolig.loadtests' Participant, publishing flash + beep tracks) talk
through a `fortrolig serve` process: the practitioner asks over the WebSocket, both consent, the
node's SFU records, the practitioner stops, and the recording is then only reachable the way the
notes panel reaches it — listed over the journal API, played through a playback ticket, in byte
ranges. The test decodes what it was served with PyAV: both participants' audio and video, the
length it ran, lip sync within 80 ms, and no decoder or encoder ever opened in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import BeepAudioTrack, FlashVideoTrack, SyncClock
from tests.conftest import Server
from tests.support.av_sync import analyse, skews

RECORD_S = 12.0
MAX_SKEW_S = 0.080

pytestmark = pytest.mark.timeout(180)


class Practice:
    """The dev practitioner's HTTP calls to the node, with their access token."""

    def __init__(self, server: Server, http: aiohttp.ClientSession, access: str) -> None:
        self.server = server
        self.http = http
        self.auth = {"Authorization": f"Bearer {access}"}

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.server.base_url + path, json=body, headers=self.auth
        ) as resp:
            return resp.status, await resp.json()

    async def new_client(self, name: str) -> str:
        status, body = await self.call("POST", "/api/journal/clients", {"name": name})
        assert status == 201, body
        return str(body["id"])

    async def recordings(self, client_id: str) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/api/journal/clients/{client_id}/recordings")
        assert status == 200, body
        return list(body["recordings"])


@pytest.fixture
async def practice(server: Server) -> AsyncIterator[tuple[Practice, dict[str, Any]]]:
    session = server.session()
    async with aiohttp.ClientSession() as http:
        yield Practice(server, http, session["access_token"]), session


def flash_and_beep() -> list[Any]:
    clock = SyncClock()
    return [BeepAudioTrack(clock), FlashVideoTrack(clock)]


@contextlib.asynccontextmanager
async def both_in(
    server: Server, session: dict[str, Any]
) -> AsyncIterator[tuple[Participant, Participant]]:
    """The practitioner and the client in the room, publishing flash + beep; closed after."""
    doctor = Participant(server.ws_url, session["practitioner_token"], name="Dr. Hansen")
    client = Participant(server.ws_url, session["client_token"], name="Anna")
    doctor.tracks, client.tracks = flash_and_beep(), flash_and_beep()
    try:
        await doctor.start()
        await client.start()
        yield doctor, client
    finally:
        await doctor.close()
        await client.close()


async def state(p: Participant, wanted: str, within: float = 15.0) -> dict[str, Any]:
    """The next ``recording`` message in state ``wanted`` (earlier states are skipped)."""
    async with asyncio.timeout(within):
        while True:
            msg = await p.expect("recording", within=within)
            if msg["state"] == wanted:
                return msg


async def play(practice: Practice, client_id: str, rid: str, index: int) -> str:
    path = f"/api/journal/clients/{client_id}/recordings/{rid}/parts/{index}/playback"
    status, body = await practice.call("POST", path)
    assert status == 201, body
    return practice.server.base_url + str(body["url"])


async def fetch(practice: Practice, url: str, headers: dict[str, str] | None = None) -> Any:
    # No Bearer header: the ticket in the URL is the credential (a <video> element sends none).
    async with practice.http.get(url, headers=headers or {}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_a_consented_recording_is_stored_served_and_in_sync(
    server: Server, practice: tuple[Practice, dict[str, Any]]
) -> None:
    office, session = practice
    client_id = await office.new_client("Anna Jensen")
    codecs_before = server.metric("fortrolig_media_codec_instances_total")
    async with both_in(server, session) as (doctor, client):
        await doctor.send({"type": "record_request", "client_id": client_id})
        asking = await state(client, "asking")
        assert asking["waiting_for"] == [client.participant_id]
        assert await office.recordings(client_id) == []  # nothing before everyone agreed
        await client.send(
            {"type": "record_consent", "recording_id": asking["recording_id"], "accept": True}
        )
        running = await state(doctor, "recording")
        assert running["accepted"] == [doctor.participant_id, client.participant_id]
        listed = await office.recordings(client_id)
        assert [(r["id"], r["state"]) for r in listed] == [(running["recording_id"], "recording")]
        await asyncio.sleep(RECORD_S)
        await doctor.send({"type": "record_stop", "recording_id": running["recording_id"]})
        stopped = await state(client, "stopped")
        assert (stopped["reason"], stopped["by"]) == ("stopped", doctor.participant_id)

    (recording,) = await office.recordings(client_id)
    assert recording["state"] == "finished", recording
    assert len(recording["consented_by"]) == 2
    assert RECORD_S - 3 < recording["duration_s"] < RECORD_S + 3, recording
    last = recording["parts"][-1]
    assert last["tracks"] == 4, recording  # both participants' audio and video

    url = await play(office, client_id, recording["id"], last["index"])
    status, headers, whole = await fetch(office, url)
    assert status == 200 and headers["Content-Type"] == "video/webm"
    assert len(whole) == last["bytes"] and headers["Cache-Control"] == "no-store"
    status, headers, head = await fetch(office, url, {"Range": "bytes=0-99"})
    expected = (206, whole[:100], f"bytes 0-99/{len(whole)}")
    assert (status, head, headers["Content-Range"]) == expected
    status, _, tail = await fetch(office, url, {"Range": "bytes=-10"})
    assert (status, tail) == (206, whole[-10:])
    status, headers, _ = await fetch(office, url, {"Range": f"bytes={len(whole)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(whole)}")

    # The access log names the playback path without its ticket (the URL is the credential).
    log = server.log_path.read_text()
    assert url.rsplit("/", 1)[1] not in log and "/api/recordings/play/<ticket>" in log
    tracks = analyse(whole)
    names = {title.rsplit("-", 1)[0] for title in tracks}
    assert names == {doctor.participant_id, client.participant_id}, tracks.keys()
    for title, info in tracks.items():
        assert info["last"] - info["first"] > last["duration_s"] - 2.0, (title, info)
    for who in names:
        measured = skews(tracks[f"{who}-video"]["marks"], tracks[f"{who}-audio"]["marks"])
        assert len(measured) >= RECORD_S - 5, (who, measured)
        assert max(abs(s) for s in measured) < MAX_SKEW_S, (who, measured)
        print(f"{who}: flash - beep ms {[round(s * 1000) for s in measured]}")
    with av.open(io.BytesIO(whole)) as container:
        codecs = {s.codec_context.name for s in container.streams}
    assert codecs <= {"vp8", "opus", "h264"}, codecs  # forwarded as sent, never transcoded

    # The server forwarded and muxed without opening one decoder or encoder.
    assert server.metric("fortrolig_media_codec_instances_total") == codecs_before == 0
    assert server.metric("fortrolig_recordings_parts_stored_total") >= 1
    # Nothing of it stays on the node's disk: the parts went into the journal.
    assert os.listdir(server.data_dir / "recordings") == []


async def test_a_refusal_records_nothing_and_a_withdrawal_ends_the_recording(
    server: Server, practice: tuple[Practice, dict[str, Any]]
) -> None:
    office, session = practice
    client_id = await office.new_client("Bo Madsen")
    async with both_in(server, session) as (doctor, client):
        await doctor.send({"type": "record_request", "client_id": client_id})
        asking = await state(client, "asking")
        await client.send(
            {"type": "record_consent", "recording_id": asking["recording_id"], "accept": False}
        )
        refused = await state(doctor, "stopped")
        assert (refused["reason"], refused["by"]) == ("refused", client.participant_id)
        assert await office.recordings(client_id) == []

        await doctor.send({"type": "record_request", "client_id": client_id})
        asking = await state(client, "asking")
        rid = asking["recording_id"]
        await client.send({"type": "record_consent", "recording_id": rid, "accept": True})
        await state(doctor, "recording")
        await asyncio.sleep(4.0)
        await client.send({"type": "record_consent", "recording_id": rid, "accept": False})
        withdrawn = await state(doctor, "stopped")
        assert (withdrawn["reason"], withdrawn["by"]) == ("withdrawn", client.participant_id)
    (recording,) = await office.recordings(client_id)
    assert recording["id"] == rid and recording["state"] == "finished", recording
    assert 1.0 < recording["duration_s"] < 8.0, recording

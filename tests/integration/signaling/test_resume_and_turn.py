"""Resume tokens (refresh and reconnect) and TURN credentials in `welcome`, on a real node."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from tests.conftest import Server, start_server, stop_server
from tests.support.polling import eventually
from tests.support.ws_client import NodeClient, load_server_key

TURN_SECRET = b"0123456789abcdef0123456789abcdef-turn"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("resume")
    secret = tmp / "turn.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, TURN_SECRET)
    os.close(fd)
    env = {
        "FORTROLIG_AUTH__RESUME_TOKEN_TTL_S": "4",
        "FORTROLIG_MEDIA__TURN_URLS": "turn:turn.example.eu:3478?transport=udp",
        "FORTROLIG_MEDIA__TURN_SECRET_FILE": str(secret),
    }
    srv = start_server(tmp, env)
    yield srv
    stop_server(srv)


def tracks(colour: tuple[int, int, int]) -> list[object]:
    return [PatternVideoTrack(*colour, 320, 240, 30), ToneAudioTrack()]


async def test_welcome_carries_ephemeral_turn_credentials(node: Server) -> None:
    session = node.session()
    a = Participant(node.ws_url, session["client_token"])
    try:
        welcome = await a.connect()
    finally:
        await a.close()
    assert welcome["ice_transport_policy"] == "all"  # relay only where the room forces it
    (turn,) = welcome["ice_servers"]
    assert turn["urls"] == ["turn:turn.example.eu:3478?transport=udp"]
    expiry, user = turn["username"].split(":")
    assert user == welcome["participant_id"]
    assert 3500 < int(expiry) - time.time() <= 3600
    digest = hmac.new(TURN_SECRET, turn["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn["credential"]) == digest


async def test_resume_token_is_refreshed_and_resumes_the_participant(node: Server) -> None:
    session = node.session()
    a = Participant(node.ws_url, session["practitioner_token"], tracks=tracks((82, 90, 240)))
    b = Participant(node.ws_url, session["client_token"], tracks=tracks((145, 54, 34)))
    b2: Participant | None = None
    try:
        await a.start()
        welcome = await b.start()
        first = welcome["resume_token"]
        fresh = await b.expect("resume_token", within=6)
        assert fresh["token"] != first
        await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 10, 10)

        # b's connection drops (its place is held); it comes back with its newest resume token.
        assert b._ws is not None
        await b._ws.close()
        assert (await a.expect("participant_away"))["participant_id"] == b.participant_id
        b2 = Participant(node.ws_url, fresh["token"], tracks=tracks((145, 54, 34)))
        again = await b2.start()
        assert again["participant_id"] == b.participant_id  # the same participant, resumed
        assert (await a.expect("participant_joined"))["participant"]["id"] == b.participant_id
        before = a.frames_from(b.participant_id or "", "video")
        await eventually(lambda: a.frames_from(b.participant_id or "", "video") > before + 10, 10)
        await eventually(lambda: b2.frames_from(a.participant_id or "", "video") > 10, 10)

        # A resume token is single-use.
        replay = Participant(node.ws_url, fresh["token"])
        try:
            refused = await replay.connect()
            assert (refused["type"], refused["code"]) == ("error", "token_replayed")
        finally:
            await replay.close()
    finally:
        for p in (a, b, b2):
            if p is not None:
                await p.close()


async def test_participant_without_camera_or_with_only_a_data_channel_receives_media(
    node: Server,
) -> None:
    session = node.session(max_participants=3)
    a = Participant(node.ws_url, session["practitioner_token"], tracks=tracks((82, 90, 240)))
    audio_only = Participant(node.ws_url, session["client_token"], tracks=[ToneAudioTrack()])
    third = _token(node, session)
    watcher = Participant(node.ws_url, third)
    watcher.pc_factory = _with_data_channel
    try:
        await a.start()
        await audio_only.start()
        await watcher.start()
        await eventually(lambda: audio_only.frames_from(a.participant_id or "", "video") > 10, 10)
        await eventually(lambda: watcher.frames_from(a.participant_id or "", "video") > 10, 10)
        await eventually(lambda: a.frames_from(audio_only.participant_id or "", "audio") > 10, 10)
    finally:
        for p in (a, audio_only, watcher):
            await p.close()


def _with_data_channel(config: object) -> object:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection(config)  # type: ignore[arg-type]
    pc.createDataChannel("probe")  # offers only an application m-line: nothing to publish
    return pc


def _token(node: Server, session: dict[str, object]) -> str:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"{node.base_url}/api/v1/rooms/{session['room_id']}/tokens",
        data=b'{"role": "client"}',
        headers={
            "Authorization": f"Bearer {session['access_token']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["token"])


def test_world_readable_turn_secret_is_refused_at_start(tmp_path: Path) -> None:
    # The node refuses a world-readable TURN secret (config validation at start).
    secret = tmp_path / "s"
    secret.write_bytes(TURN_SECRET)
    secret.chmod(0o644)
    with pytest.raises(RuntimeError, match="accessible by group/others"):
        start_server(
            tmp_path,
            {
                "FORTROLIG_MEDIA__TURN_URLS": "turn:t.example.eu",
                "FORTROLIG_MEDIA__TURN_SECRET_FILE": str(secret),
            },
        )


async def test_a_force_relay_room_tells_its_participants_to_relay(node: Server) -> None:
    async with aiohttp.ClientSession() as http:
        api = NodeClient(node, http, load_server_key(node))
        status, room = await api.call("POST", "/api/v1/rooms", {"force_relay": True})
        assert status == 201 and room["force_relay"] is True, room
        status, shown = await api.call("GET", f"/api/v1/rooms/{room['room_id']}")
        assert status == 200 and shown["force_relay"] is True
        token = await api.join_token(room["room_id"], "client")
    welcome = await _welcome_of(node, token)
    assert welcome["ice_transport_policy"] == "relay"
    (turn,) = welcome["ice_servers"]
    assert turn["urls"] == ["turn:turn.example.eu:3478?transport=udp"] and turn["credential"]


async def test_a_force_relay_consultation_is_stored_with_its_room(node: Server) -> None:
    async with aiohttp.ClientSession() as http:
        api = NodeClient(node, http, load_server_key(node))
        body = {"verification": "anonymous", "force_relay": True}
        status, made = await api.call("POST", "/api/v1/consultations", body)
        assert status == 201 and made["force_relay"] is True, made
        status, shown = await api.call("GET", f"/api/v1/consultations/{made['consultation_id']}")
        assert status == 200 and shown["force_relay"] is True
        status, room = await api.call("GET", f"/api/v1/rooms/{made['room_id']}")
        assert status == 200 and room["force_relay"] is True and room["waiting_room"] is True
        token = await api.join_token(made["room_id"], "practitioner")
    assert (await _welcome_of(node, token))["ice_transport_policy"] == "relay"


async def _welcome_of(node: Server, token: str) -> dict[str, Any]:
    a = Participant(node.ws_url, token)
    try:
        return await a.connect()
    finally:
        await a.close()

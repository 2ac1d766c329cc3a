"""Resume tokens (refresh and reconnect) and TURN credentials in `welcome`, on a real node."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from tests.conftest import Server, start_server, stop_server

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


async def wait_until(cond: object, limit: float) -> None:
    start = time.monotonic()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() - start < limit, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_welcome_carries_ephemeral_turn_credentials(node: Server) -> None:
    session = node.session()
    a = Participant(node.ws_url, session["client_token"])
    try:
        welcome = await a.connect()
    finally:
        await a.close()
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
        await wait_until(lambda: a.frames_from(b.participant_id or "", "video") > 10, 10)

        # b's connection drops; it comes back with its newest resume token.
        assert b._ws is not None
        await b._ws.close()
        assert (await a.expect("participant_left"))["participant_id"] == b.participant_id
        b2 = Participant(node.ws_url, fresh["token"], tracks=tracks((145, 54, 34)))
        again = await b2.start()
        assert again["participant_id"] == b.participant_id  # the same participant, resumed
        assert (await a.expect("participant_joined"))["participant"]["id"] == b.participant_id
        before = a.frames_from(b.participant_id or "", "video")
        await wait_until(lambda: a.frames_from(b.participant_id or "", "video") > before + 10, 10)
        await wait_until(lambda: b2.frames_from(a.participant_id or "", "video") > 10, 10)

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
        await wait_until(lambda: audio_only.frames_from(a.participant_id or "", "video") > 10, 10)
        await wait_until(lambda: watcher.frames_from(a.participant_id or "", "video") > 10, 10)
        await wait_until(lambda: a.frames_from(audio_only.participant_id or "", "audio") > 10, 10)
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

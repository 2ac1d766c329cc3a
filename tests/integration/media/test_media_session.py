"""Media through a real `fortrolig serve`: two and three aiortc participants on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80
from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from fortrolig.media import aiortc_hooks as hooks
from tests.conftest import Server, start_server, stop_server
from tests.support.polling import eventually

RED = (82, 90, 240)
GREEN = (145, 54, 34)
BLUE = (41, 240, 110)


def make(server: Server, token: str, colour: tuple[int, int, int]) -> Participant:
    return Participant(
        server.ws_url, token, tracks=[PatternVideoTrack(*colour, 320, 240, 30), ToneAudioTrack()]
    )


def close_to(sample: tuple[float, float, float] | None, colour: tuple[int, int, int]) -> bool:
    return sample is not None and all(abs(a - b) < 6 for a, b in zip(sample, colour, strict=True))


@pytest.fixture
async def pair(server: Server) -> AsyncIterator[tuple[Participant, Participant, dict[str, Any]]]:
    session = server.session()
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    await a.start()
    await b.start()
    yield a, b, session
    await a.close()
    await b.close()


async def test_two_participants_exchange_media_and_chat(
    server: Server, pair: tuple[Participant, Participant, dict[str, Any]]
) -> None:
    a, b, _ = pair
    assert a.participant_id and b.participant_id

    def state() -> object:
        return [
            (r.participant_id, r.kind, r.counter.frames, r.counter.sample_yuv)
            for r in a.remote + b.remote
        ]

    await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 60, 15, what=state)
    await eventually(lambda: b.frames_from(a.participant_id or "", "video") > 60, 15, what=state)
    await eventually(lambda: a.frames_from(b.participant_id or "", "audio") > 50, 5, what=state)
    await eventually(lambda: b.frames_from(a.participant_id or "", "audio") > 50, 5, what=state)
    # A decoded sample shows the other participant's colour: the media is intact.
    await eventually(lambda: close_to(_sample(a, b), GREEN), 5, what=state)
    await eventually(lambda: close_to(_sample(b, a), RED), 5, what=state)

    await a.send({"type": "chat", "text": "Goddag, hvordan går det?", "id": "m1"})
    got = await b.expect("chat")
    assert (got["from_id"], got["text"], got["id"]) == (
        a.participant_id,
        "Goddag, hvordan går det?",
        "m1",
    )
    await b.send({"type": "chat", "text": "Fint, tak", "id": "m2"})
    got = await a.expect("chat")
    while got["from_id"] != b.participant_id:  # a first sees the echo of its own line
        got = await a.expect("chat")
    assert got["text"] == "Fint, tak"

    # Both legs negotiated AES-256-GCM (checked on the client transports).
    for p in (a, b):
        assert p.pc is not None
        profiles = {hooks.selected_srtp_profile(d) for d in hooks.dtls_transports(p.pc)}
        assert profiles == {"SRTP_AEAD_AES_256_GCM"}

    # Forwarded without a single decoder or encoder in the server process, by the native data
    # plane read on its I/O thread (the default).
    await eventually(lambda: server.metric("fortrolig_media_forwarded_packets_total") > 200, 3)
    assert server.metric("fortrolig_media_codec_instances_total") == 0
    assert server.metric("fortrolig_media_native_datagrams_total") > 200
    assert server.metric("fortrolig_media_io_thread_wakeups_total") > 0
    assert server.metric("fortrolig_media_io_thread_dropped_events_total") == 0


async def test_media_flows_with_the_io_thread_off(tmp_path: Path) -> None:
    """media.io_thread = false: the same native code reads the sockets from the event loop."""
    node = start_server(tmp_path, {"FORTROLIG_MEDIA__IO_THREAD": "false"})
    try:
        session = node.session()
        a = make(node, session["practitioner_token"], RED)
        b = make(node, session["client_token"], GREEN)
        await a.start()
        await b.start()
        try:
            await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 30, 15)
            await eventually(lambda: b.frames_from(a.participant_id or "", "video") > 30, 15)
            await eventually(lambda: close_to(_sample(a, b), GREEN), 5)
        finally:
            await a.close()
            await b.close()
        assert node.metric("fortrolig_media_native_datagrams_total") > 100
        assert node.metric("fortrolig_media_io_thread_wakeups_total") == 0
    finally:
        stop_server(node)


def _sample(viewer: Participant, publisher: Participant) -> tuple[float, float, float] | None:
    counter = viewer.counter_for(publisher.participant_id or "", "video")
    return counter.sample_yuv if counter else None


async def test_publisher_receives_remb_and_receiver_reports(server: Server) -> None:
    session = server.session()
    seen: dict[str, int] = {"rr": 0, "remb": 0, "remb_bps": 0}

    def factory(config: Any) -> RTCPeerConnection:
        pc = RTCPeerConnection(config)
        original_add = pc.addTransceiver

        def add(track_or_kind: Any, direction: str = "sendrecv") -> Any:
            transceiver = original_add(track_or_kind, direction)
            sender = transceiver.sender
            original = sender._handle_rtcp_packet

            async def spy(packet: Any) -> None:
                if isinstance(packet, RtcpRrPacket):
                    seen["rr"] += 1
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                    seen["remb"] += 1
                await original(packet)

            sender._handle_rtcp_packet = spy
            return transceiver

        pc.addTransceiver = add  # type: ignore[method-assign]
        return pc

    a = make(server, session["practitioner_token"], RED)
    a.pc_factory = factory
    b = make(server, session["client_token"], GREEN)
    b.pc_factory = _sr_watcher
    try:
        await a.start()
        await b.start()
        await eventually(lambda: seen["rr"] >= 3 and seen["remb"] >= 2, 15)
        # Lip sync: every leg sends sender reports whose RTP timestamp tracks the stream.
        await eventually(lambda: len(_SR_CHECKS.get(id(b.pc), [])) >= 4, 10)
        checks = _SR_CHECKS[id(b.pc)]
        assert len({ssrc for ssrc, _ in checks}) == 2  # audio and video legs
        assert all(abs(drift) < 0.5 for _, drift in checks), checks
    finally:
        await a.close()
        await b.close()


_SR_CHECKS: dict[int, list[tuple[int, float]]] = {}


def _sr_watcher(config: Any) -> RTCPeerConnection:
    """A subscriber that compares each SR's RTP time with the latest RTP packet of its SSRC."""
    pc = RTCPeerConnection(config)
    checks = _SR_CHECKS.setdefault(id(pc), [])
    latest: dict[int, tuple[int, int]] = {}  # ssrc -> (rtp timestamp, payload type)
    original_add = pc.addTransceiver

    def add(track_or_kind: Any, direction: str = "sendrecv") -> Any:
        transceiver = original_add(track_or_kind, direction)
        dtls = transceiver.receiver.transport
        if getattr(dtls, "_sr_watch", False):
            return transceiver
        dtls._sr_watch = True
        on_rtp, on_rtcp = dtls._handle_rtp_data, dtls._handle_rtcp_data

        async def rtp(data: bytes, arrival_time_ms: int) -> None:
            ssrc = int.from_bytes(data[8:12], "big")
            latest[ssrc] = (int.from_bytes(data[4:8], "big"), data[1] & 0x7F)
            await on_rtp(data, arrival_time_ms)

        async def rtcp(data: bytes) -> None:
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpSrPacket) and packet.ssrc in latest:
                    ts, pt = latest[packet.ssrc]
                    rate = 90_000 if pt != 96 else 48_000
                    drift = ((packet.sender_info.rtp_timestamp - ts + 2**31) % 2**32 - 2**31) / rate
                    checks.append((packet.ssrc, drift))
            await on_rtcp(data)

        dtls._handle_rtp_data = rtp
        dtls._handle_rtcp_data = rtcp
        return transceiver

    pc.addTransceiver = add  # type: ignore[method-assign]
    return pc


async def test_late_joiner_gets_a_keyframe_within_a_second(server: Server) -> None:
    session = server.session(max_participants=3)
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    third_token = _extra_token(server, session)
    c = make(server, third_token, BLUE)
    try:
        await a.start()
        await b.start()
        # aiortc's encoder makes a keyframe only every 3000 frames: once a and b see each
        # other, their first keyframes are past, and c's can only come from a PLI.
        await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 10, 15)
        await eventually(lambda: b.frames_from(a.participant_id or "", "video") > 10, 15)
        plis_before = server.metric("fortrolig_media_pli_sent_total")
        await c.start()
        joined_at = time.monotonic()
        await eventually(lambda: c.frames_from(a.participant_id or "", "video") > 0, 5)
        await eventually(lambda: c.frames_from(b.participant_id or "", "video") > 0, 5)
        first = max(
            (c.counter_for(x.participant_id or "", "video").first_at or 0.0)  # type: ignore[union-attr]
            for x in (a, b)
        )
        assert first - joined_at < 1.0
        # Media metrics come from the workers once a second.
        await eventually(lambda: server.metric("fortrolig_media_pli_sent_total") > plis_before, 3)
        await eventually(lambda: close_to(_sample(c, a), RED) and close_to(_sample(c, b), GREEN), 5)
    finally:
        for p in (a, b, c):
            await p.close()


def _extra_token(server: Server, session: dict[str, Any]) -> str:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"{server.base_url}/api/v1/rooms/{session['room_id']}/tokens",
        data=json.dumps({"role": "client"}).encode(),
        headers={
            "Authorization": f"Bearer {session['access_token']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["token"])


async def test_nack_retransmission_completes_frames_under_loss(server: Server) -> None:
    session = server.session()
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    rng = random.Random(7)
    dropped = {"n": 0}

    def lossy(config: Any) -> RTCPeerConnection:
        pc = RTCPeerConnection(config)
        original_add = pc.addTransceiver

        def add(track_or_kind: Any, direction: str = "sendrecv") -> Any:
            transceiver = original_add(track_or_kind, direction)
            dtls = transceiver.receiver.transport
            if not getattr(dtls, "_lossy", False):
                dtls._lossy = True
                original = dtls._handle_rtp_data

                async def drop_some(data: bytes, arrival_time_ms: int) -> None:
                    # 5 % of the video media packets (payload type of VP8, never RTX) vanish
                    # on the way to this subscriber.
                    # aiortc numbers VP8 97 (RTX 98) in the SFU's offers.
                    if (data[1] & 0x7F) == 97 and rng.random() < 0.05:
                        dropped["n"] += 1
                        return
                    await original(data, arrival_time_ms)

                dtls._handle_rtp_data = drop_some
            return transceiver

        pc.addTransceiver = add  # type: ignore[method-assign]
        return pc

    b.pc_factory = lossy
    try:
        await a.start()
        await b.start()
        await asyncio.sleep(8)
        sent = a.tracks[0].frames_sent  # type: ignore[attr-defined]
        got = b.frames_from(a.participant_id or "", "video")
    finally:
        await a.close()
        await b.close()
    assert dropped["n"] >= 5
    await eventually(lambda: server.metric("fortrolig_media_retransmitted_total") > 0, 3)
    # Without retransmission ~5 % of packets lost would break far more than 10 % of frames.
    assert got >= 0.85 * sent, (got, sent, dropped)


async def test_leaving_and_dropping_free_everything(server: Server) -> None:
    await asyncio.sleep(1.5)
    base_tasks = server.metric("fortrolig_asyncio_tasks")
    base_fds = server.metric("fortrolig_open_fds")
    session = server.session()
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    await a.start()
    await b.start()
    await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 10, 10)
    await eventually(lambda: server.metric("fortrolig_media_peers") == 2, 3)
    await a.send({"type": "leave"})
    assert (await a.expect("bye"))["reason"] == "left"
    left = await b.expect("participant_left")
    assert left["participant_id"] == a.participant_id
    # b's WebSocket is cut without a goodbye: the server cleans up its media at once.
    assert b._ws is not None
    await b._ws.close()
    await eventually(lambda: server.metric("fortrolig_media_peers") == 0, 10)
    await a.close()
    await b.close()
    await eventually(lambda: server.metric("fortrolig_participants") == 0, 5)
    await eventually(lambda: server.metric("fortrolig_media_legs") == 0, 5)
    await eventually(lambda: server.metric("fortrolig_asyncio_tasks") <= base_tasks, 10)
    await eventually(lambda: server.metric("fortrolig_open_fds") <= base_fds, 10)


async def test_failed_peer_is_cleaned_up_and_told(server: Server) -> None:
    session = server.session()
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    await a.start()
    await b.start()
    await eventually(lambda: a.frames_from(b.participant_id or "", "video") > 5, 10)
    assert b.pc is not None
    await b.pc.close()  # the media path dies while the WebSocket stays
    err = await b.expect("error", within=20)
    assert err["code"] == "media_failed"
    closed = await b.expect("closed", within=5)
    assert closed["code"] == 4500
    # It may come back with its resume token: its place is held, a is told it is away.
    away = await a.expect("participant_away")
    assert away["participant_id"] == b.participant_id and away["grace_s"] > 0
    await a.close()
    await b.close()
    await eventually(lambda: server.metric("fortrolig_media_peers") == 0, 10)


async def test_peer_without_aes256_gcm_is_refused(server: Server) -> None:
    session = server.session()

    def weak(config: Any) -> RTCPeerConnection:
        pc = RTCPeerConnection(config)
        original_add = pc.addTransceiver

        def add(track_or_kind: Any, direction: str = "sendrecv") -> Any:
            transceiver = original_add(track_or_kind, direction)
            transceiver.receiver.transport._srtp_profiles = [SRTP_AES128_CM_SHA1_80]
            return transceiver

        pc.addTransceiver = add  # type: ignore[method-assign]
        return pc

    a = make(server, session["practitioner_token"], RED)
    a.pc_factory = weak
    try:
        await a.connect()
        await a.join()
        welcome = {"ice_servers": []}
        await a.publish(welcome)
        err = await a.expect("error", within=40)
        assert err["code"] == "media_failed"
        assert a.pc is not None
        assert {hooks.selected_srtp_profile(d) for d in hooks.dtls_transports(a.pc)} != {
            "SRTP_AEAD_AES_256_GCM"
        }
    finally:
        await a.close()
    await eventually(lambda: server.metric("fortrolig_media_peers") == 0, 10)


async def test_a_second_video_is_a_screen_forwarded_apart_from_the_camera(server: Server) -> None:
    """The publish offer's second video m-line is the screen: viewers get it as
    ``<participant>-screen`` in a stream of its own, the camera stays the camera."""
    session = server.session()
    sharer = Participant(
        server.ws_url,
        session["practitioner_token"],
        tracks=[
            PatternVideoTrack(*RED, 320, 240, 30),
            ToneAudioTrack(),
            PatternVideoTrack(*BLUE, 640, 360, 15),
        ],
    )
    viewer = make(server, session["client_token"], GREEN)
    await sharer.start()
    await viewer.start()
    try:
        pid = sharer.participant_id or ""
        await eventually(lambda: viewer.frames_from(pid, "screen") > 20, 15, what=viewer.remote)
        await eventually(lambda: viewer.frames_from(pid, "video") > 20, 15, what=viewer.remote)
        camera = viewer.counter_for(pid, "video")
        screen = viewer.counter_for(pid, "screen")
        await eventually(lambda: close_to(camera.sample_yuv if camera else None, RED), 5)
        await eventually(lambda: close_to(screen.sample_yuv if screen else None, BLUE), 5)
    finally:
        await sharer.close()
        await viewer.close()


@pytest.mark.parametrize(
    "tracks",
    [
        pytest.param(lambda: [ToneAudioTrack(), ToneAudioTrack()], id="two-microphones"),
        pytest.param(
            lambda: [PatternVideoTrack(*RED, 160, 120, 5) for _ in range(3)], id="three-videos"
        ),
    ],
)
async def test_a_publish_offer_beyond_microphone_camera_and_screen_is_refused(
    server: Server, tracks: Any
) -> None:
    session = server.session()
    p = Participant(server.ws_url, session["practitioner_token"], tracks=tracks())
    try:
        await p.connect()
        await p.join()
        with pytest.raises(RuntimeError, match=r"'bad_sdp'.*a camera and a screen"):
            await p.publish({"ice_servers": []})
        assert server.metric("fortrolig_media_codec_instances_total") == 0
    finally:
        await p.close()

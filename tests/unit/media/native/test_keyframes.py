"""The keyframe gate and keyframe detection (RFC 7741 VP8, RFC 6184 H.264)."""

from __future__ import annotations

import pytest

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    LEG_PT,
    LEG_SSRC,
    VP8_DELTA,
    VP8_KEY,
    Net,
    make_leg,
    make_track,
    rtp,
    rtx,
    wired,
)

# ------------------------------------------------------------------------------------------
# Keyframe gate
# ------------------------------------------------------------------------------------------


def test_video_gate_waits_for_a_keyframe(net: Net) -> None:
    track, calls = make_track(net.counters, codec=_fastpath.KEYFRAME_VP8)
    video = make_leg(net, gated=True, seq_start=7000)
    audio_like = make_leg(net, gated=False, seq_start=100, ssrc=0x55555555)
    track.add_leg(video)
    track.add_leg(audio_like)

    def received(expected: list[tuple[int, int]]) -> None:
        got = [net.recv() for _ in expected]
        assert [(p.ssrc, p.sequence_number) for p in got] == expected
        net.assert_silent()

    track.ingest(rtp(10, payload=VP8_DELTA))
    received([(0x55555555, 100)])  # an ungated leg starts at once
    assert (net.counters.gated_drops, calls.keyframes, video.forwarding) == (1, 1, False)
    assert audio_like.forwarding

    track.ingest(rtp(12, payload=VP8_KEY))
    received([(LEG_SSRC, 7000), (0x55555555, 102)])
    assert video.forwarding
    assert calls.keyframes == 1  # the gate opened: nobody waits any more

    track.ingest(rtp(13, payload=VP8_DELTA))
    received([(LEG_SSRC, 7001), (0x55555555, 103)])

    track.ingest(rtp(11, payload=VP8_DELTA))  # reordered from before the video gate opened
    received([(0x55555555, 101)])  # the ungated leg had seen its base (10)
    track.ingest(rtp(9, payload=VP8_DELTA))  # before both legs' first packet
    received([])
    assert (video.packets, net.counters.gated_drops, calls.keyframes) == (2, 1, 1)


def test_gate_drops_count_each_packet_and_ask_for_a_keyframe_each_time(net: Net) -> None:
    track, calls = make_track(net.counters, codec=_fastpath.KEYFRAME_H264)
    track.add_leg(make_leg(net, gated=True))
    track.add_leg(make_leg(net, gated=True, ssrc=0x55555555))
    for seq in (1, 2, 3):
        track.ingest(rtp(seq, payload=bytes([0x41, 0x9A])))  # non-IDR slice
    net.assert_silent()
    assert net.counters.gated_drops == 6  # two legs, three packets
    assert calls.keyframes == 3  # once per packet, not once per leg
    track.ingest(rtp(4, payload=bytes([0x7C, 0x85, 0x88])))  # FU-A start of an IDR
    assert {net.recv().ssrc, net.recv().ssrc} == {LEG_SSRC, 0x55555555}


def test_gate_opens_on_a_keyframe_arriving_over_rtx(net: Net) -> None:
    track, leg, _ = wired(net, codec=_fastpath.KEYFRAME_VP8, gated=True, seq_start=50)
    track.ingest(rtp(20, payload=VP8_DELTA))  # learns the media SSRC, dropped at the gate
    track.ingest(rtp(22, payload=VP8_DELTA))
    net.assert_silent()
    track.ingest(rtx(3, 21, payload=VP8_KEY))
    p = net.recv()
    assert (p.sequence_number, p.payload_type, p.ssrc, p.payload) == (50, LEG_PT, LEG_SSRC, VP8_KEY)
    assert leg.forwarding


# ------------------------------------------------------------------------------------------
# Keyframe detection (RFC 7741 VP8, RFC 6184 H.264)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (bytes([0x10, 0x00]), True),  # S=1, PID=0, P=0
        (bytes([0x10, 0x01]), False),  # interframe
        (bytes([0x00, 0x00]), False),  # not a partition start
        (bytes([0x11, 0x00]), False),  # partition 1
        (bytes([0x90, 0x80, 0x81, 0x23, 0x00]), True),  # X=1, I=1, 15-bit picture id
        (bytes([0x90, 0x80, 0x81]), False),  # truncated
        (bytes([0x90, 0x80, 0x05, 0x00]), True),  # 7-bit picture id
        (bytes([0x90, 0xF0, 0x05, 0x01, 0x02, 0x00]), True),  # I, L, T/K
        (bytes([0x90, 0xF0, 0x05, 0x01, 0x02]), False),  # truncated after T/K
        (b"", False),
    ],
)
def test_vp8_keyframe_start(payload: bytes, expected: bool) -> None:
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_VP8, payload) is expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (bytes([0x65, 0x00]), True),  # IDR
        (bytes([0x67]), True),  # SPS
        (bytes([0x41]), False),  # non-IDR slice
        (bytes([0x18, 0x00, 0x02, 0x67, 0x00]), True),  # STAP-A with an SPS
        (bytes([0x18, 0x00, 0x09, 0x67]), False),  # STAP-A lying about its size
        (bytes([0x18, 0x00, 0x01, 0x41, 0x00, 0x01, 0x65]), True),  # IDR second in a STAP-A
        (bytes([0x7C, 0x85]), True),  # FU-A start of an IDR
        (bytes([0x7C, 0x05]), False),  # FU-A continuation
        (bytes([0x7C, 0x81]), False),  # FU-A start of a non-IDR slice
        (bytes([0x7C]), False),  # FU-A without its header
        (b"", False),
    ],
)
def test_h264_keyframe_start(payload: bytes, expected: bool) -> None:
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_H264, payload) is expected


def test_is_keyframe_start_accepts_any_buffer_and_no_keyframes_without_a_codec() -> None:
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_VP8, bytearray([0x10, 0x00]))
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_H264, memoryview(b"\x65"))
    assert not _fastpath.is_keyframe_start(_fastpath.KEYFRAME_NONE, bytes([0x10, 0x00]))

"""Pure RTP helpers of the SFU: keyframe detection, RTX wrapping, NACK tracking."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from fortrolig.media.nack import NackTracker
from fortrolig.media.payload import h264_is_keyframe_start, vp8_is_keyframe_start
from fortrolig.media.rtpbytes import header_length, packet_seq, seq_newer, wrap_rtx_bytes


def rtp(seq: int, pt: int = 97, payload: bytes = b"abc", ext: bytes = b"", pad: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if pad else 0)
    head = struct.pack("!BBHII", b0, 0x80 | pt, seq, 1234, 0xDEADBEEF)
    if ext:
        head += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    tail = (b"\0" * (pad - 1) + bytes([pad])) if pad else b""
    return head + payload + tail


def test_vp8_keyframe_start_with_and_without_extensions() -> None:
    assert vp8_is_keyframe_start(bytes([0x10, 0x00]))  # S=1, PID=0, P=0
    assert not vp8_is_keyframe_start(bytes([0x10, 0x01]))  # interframe
    assert not vp8_is_keyframe_start(bytes([0x00, 0x00]))  # not a partition start
    # X=1, I=1 with a 15-bit picture id, then the VP8 header
    assert vp8_is_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not vp8_is_keyframe_start(bytes([0x90, 0x80, 0x81]))  # truncated


def test_h264_keyframe_detection() -> None:
    assert h264_is_keyframe_start(bytes([0x65, 0x00]))  # IDR
    assert h264_is_keyframe_start(bytes([0x67]))  # SPS
    assert not h264_is_keyframe_start(bytes([0x41]))  # non-IDR slice
    assert h264_is_keyframe_start(bytes([0x18, 0x00, 0x02, 0x67, 0x00]))  # STAP-A with SPS
    assert not h264_is_keyframe_start(bytes([0x18, 0x00, 0x09, 0x67]))  # lying STAP-A size
    assert h264_is_keyframe_start(bytes([0x7C, 0x85]))  # FU-A start of IDR


@given(st.binary(max_size=64))
def test_payload_parsers_never_raise(data: bytes) -> None:
    vp8_is_keyframe_start(data)
    h264_is_keyframe_start(data)


def test_rtx_wrap_keeps_extensions_and_prefixes_original_seq() -> None:
    original = rtp(1000, ext=b"\x10\xff\x00\x00", payload=b"payload", pad=4)
    rtx = wrap_rtx_bytes(original, rtx_pt=98, rtx_seq=7, rtx_ssrc=0x01020304)
    assert rtx is not None
    hl = header_length(rtx)
    assert rtx[1] & 0x7F == 98 and rtx[1] & 0x80  # marker kept
    assert packet_seq(rtx) == 7
    assert struct.unpack_from("!I", rtx, 8)[0] == 0x01020304
    assert not rtx[0] & 0x20  # padding removed
    assert rtx[hl : hl + 2] == struct.pack("!H", 1000)
    assert rtx[hl + 2 :] == b"payload"


@given(st.binary(max_size=40))
def test_rtx_wrap_rejects_garbage_without_raising(data: bytes) -> None:
    wrap_rtx_bytes(data, 98, 1, 2)


def test_seq_newer_wraps() -> None:
    assert seq_newer(1, 65535) and not seq_newer(65535, 1) and not seq_newer(5, 5)


def test_nack_tracker_finds_gaps_and_forgets_retransmitted() -> None:
    t = NackTracker()
    assert t.add(10) == []
    assert t.add(14) == [11, 12, 13]
    assert t.add(12) == []  # retransmission arrived
    assert sorted(t.missing) == [11, 13]
    assert sorted(t.due()) == [11, 13]


def test_nack_tracker_treats_huge_jump_as_restart() -> None:
    t = NackTracker(max_gap=128)
    t.add(100)
    assert t.add(30000) == []  # no 30k-entry NACK storm from one forged packet
    assert not t.missing


def test_nack_tracker_gives_up_after_max_tries() -> None:
    t = NackTracker(max_tries=2)
    t.add(1)
    t.add(3)
    assert t.due() == [2]
    assert t.due() == []


def test_ntp_now_matches_aiortc_clock() -> None:
    import time

    from aiortc import clock

    from fortrolig.media.forwarding import ntp_now

    now = time.time()
    ours = ntp_now(now)
    theirs = clock.current_ntp_time()
    assert abs(ours - theirs) / (1 << 32) < 0.5  # same epoch and scale (taken a moment apart)

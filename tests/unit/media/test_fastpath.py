"""The native data plane (fortrolig/media/native/) with real components.

Two UDP sockets on 127.0.0.1 and real libsrtp sessions (AES-256-GCM, one key per direction):
the "peer" socket protects what it sends with its own outbound session and unprotects what the
SFU sent with an inbound session of the SFU's transmit key. What went over the wire is parsed
with aiortc. No event loop: ``Transport.on_readable()`` is called by hand once the SFU socket is
readable.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_header_extensions,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi

from fortrolig.media import _fastpath

# Importing the hooks binds the native module to pylibsrtp's libsrtp (_fastpath.init).
importlib.import_module("fortrolig.media.aiortc_hooks")

PT = 96  # the publisher's media payload type
RTX_PT = 97  # the publisher's RTX payload type
LEG_PT = 100  # the subscriber's
LEG_RTX_PT = 101
MEDIA_SSRC = 0x11111111
RTX_SSRC = 0x22222222
LEG_SSRC = 0x33333333
LEG_RTX_SSRC = 0x44444444

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID = b"v1"
MID_ID, ABS_ID, LEVEL_ID = 3, 5, 9  # the subscriber's extension ids
PUB_MID_ID, PUB_LEVEL_ID, PUB_OTHER_ID = 4, 1, 7  # the publisher's

NTP_EPOCH_OFFSET = 2208988800
VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A])  # S=1, PID=0; VP8 header P=0: keyframe
VP8_DELTA = bytes([0x10, 0x01, 0x00, 0x00])  # S=1, PID=0; P=1: interframe

SEQUENCE = itertools.count(1)  # fresh sequence numbers across examples (SRTP replay windows)


def fuzz(examples: int) -> settings:
    """Hypothesis settings: no example database written into the repository, no deadline (the
    machine is shared), one socket fixture reused by every example."""
    return settings(
        database=None,
        deadline=None,
        max_examples=examples,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


def extension_map(mid_id: int, abs_id: int, level_id: int) -> HeaderExtensionsMap:
    params = RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=mid_id, uri=MID_URI),
            RTCRtpHeaderExtensionParameters(id=abs_id, uri=ABS_SEND_TIME_URI),
            RTCRtpHeaderExtensionParameters(id=level_id, uri=AUDIO_LEVEL_URI),
        ]
    )
    extensions = HeaderExtensionsMap()
    extensions.configure(params)
    return extensions


LEG_EXTENSIONS = extension_map(MID_ID, ABS_ID, LEVEL_ID)


def srtp_key(label: str) -> bytes:
    """32-byte AES-256 key and 12-byte salt from a fixed seed."""
    return hashlib.sha512(label.encode()).digest()[:44]


def srtp_session(key: bytes, ssrc_type: int) -> Session:
    return Session(
        Policy(key=key, ssrc_type=ssrc_type, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    )


def srtp_pointer(session: Session) -> int:
    return int(ffi.cast("uintptr_t", session._srtp[0]))


def rtp(
    seq: int,
    *,
    pt: int = PT,
    ssrc: int = MEDIA_SSRC,
    ts: int = 1000,
    marker: bool = False,
    payload: bytes = b"media",
    csrcs: Sequence[int] = (),
    extensions: Sequence[tuple[int, bytes]] = (),
    padding: int = 0,
) -> bytes:
    """A plaintext RTP packet; extensions use the one-byte form (RFC 8285)."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extensions else 0) | len(csrcs)
    head = struct.pack(
        "!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )
    head += b"".join(struct.pack("!I", c) for c in csrcs)
    if extensions:
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in extensions)
        body += b"\0" * (-len(body) % 4)
        head += struct.pack("!HH", 0xBEDE, len(body) // 4) + body
    tail = b"\0" * (padding - 1) + bytes([padding]) if padding else b""
    return head + payload + tail


def rtx(seq: int, original_seq: int, payload: bytes = b"media", **kw: Any) -> bytes:
    """An RFC 4588 retransmission from the publisher: original seq, then original payload."""
    return rtp(
        seq, pt=RTX_PT, ssrc=RTX_SSRC, payload=struct.pack("!H", original_seq) + payload, **kw
    )


def extension_block(plain: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(profile, elements) of a packet's header extension; (0, []) when it has none."""
    if not plain[0] & 0x10:
        return 0, []
    pos = 12 + 4 * (plain[0] & 0x0F)
    profile, words = struct.unpack_from("!HH", plain, pos)
    return profile, unpack_header_extensions(profile, plain[pos + 4 : pos + 4 + 4 * words])


def assert_recent_abs_send_time(value: int | None) -> None:
    """abs-send-time (6.18 fixed point NTP seconds, 24 bits) of at most one second ago."""
    assert value is not None
    now = int((time.time() + NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF
    assert (now - value) & 0xFFFFFF < 1 << 18


def well_formed(d: bytes) -> bool:
    """RFC 3550 header sanity, independent of the native parser."""
    if len(d) < 12 or d[0] >> 6 != 2:
        return False
    pos = 12 + 4 * (d[0] & 0x0F)
    if pos > len(d):
        return False
    if d[0] & 0x10:
        if pos + 4 > len(d):
            return False
        pos += 4 + 4 * struct.unpack_from("!H", d, pos + 2)[0]
        if pos > len(d):
            return False
    if d[0] & 0x20:
        pad = d[-1]
        if pad == 0 or pos + pad > len(d):
            return False
    return True


@dataclass
class Net:
    """The SFU's socket with its native Transport, and the remote peer's socket."""

    sfu: socket.socket
    peer: socket.socket
    transport: _fastpath.Transport
    counters: _fastpath.Counters
    peer_tx: Session  # protects what the peer sends to the SFU
    peer_rx: Session  # unprotects what the SFU sent (the SFU's transmit key)
    fallback: list[tuple[bytes, tuple[Any, ...]]]
    hooks: list[Callable[[bytes], None]]  # also run by the fallback, after recording

    def send_raw(self, data: bytes, pump: bool = True) -> None:
        self.peer.sendto(data, self.sfu.getsockname())
        if pump:
            self.pump()

    def send(self, plain: bytes) -> bytes:
        """Protect and send a packet from the peer; the SFU reads it. Returns the wire bytes."""
        wire = self.peer_tx.protect(plain)
        self.send_raw(wire)
        return wire

    def pump(self) -> None:
        readable, _, _ = select.select([self.sfu], [], [], 0.5)
        assert readable, "the datagram never reached the SFU socket"
        self.transport.on_readable()

    def recv_wire(self) -> bytes:
        self.peer.settimeout(0.5)
        return self.peer.recv(4096)

    def recv_plain(self) -> bytes:
        return self.peer_rx.unprotect(self.recv_wire())

    def recv(self, extensions: HeaderExtensionsMap = LEG_EXTENSIONS) -> RtpPacket:
        return RtpPacket.parse(self.recv_plain(), extensions)

    def assert_silent(self) -> None:
        self.peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.peer.recv(4096)

    def drain(self) -> None:
        self.peer.setblocking(False)
        while True:
            try:
                self.peer.recv(4096)
            except BlockingIOError:
                return


@pytest.fixture
def net() -> Iterator[Net]:
    sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport: _fastpath.Transport | None = None
    try:
        sfu.bind(("127.0.0.1", 0))
        peer.bind(("127.0.0.1", 0))
        sfu.setblocking(False)
        up, down = srtp_key("fortrolig publisher->sfu"), srtp_key("fortrolig sfu->subscriber")
        sfu_rx = srtp_session(up, Policy.SSRC_ANY_INBOUND)
        sfu_tx = srtp_session(down, Policy.SSRC_ANY_OUTBOUND)
        counters = _fastpath.Counters()
        calls: list[tuple[bytes, tuple[Any, ...]]] = []
        hooks: list[Callable[[bytes], None]] = []

        def fallback(data: bytes, addr: tuple[Any, ...]) -> None:
            calls.append((data, addr))
            for hook in hooks:
                hook(data)

        transport = _fastpath.Transport(
            sfu.fileno(),
            "127.0.0.1",
            peer.getsockname()[1],
            srtp_pointer(sfu_rx),
            srtp_pointer(sfu_tx),
            (sfu_rx, sfu_tx),
            fallback,
            counters,
        )
        yield Net(
            sfu=sfu,
            peer=peer,
            transport=transport,
            counters=counters,
            peer_tx=srtp_session(up, Policy.SSRC_ANY_OUTBOUND),
            peer_rx=srtp_session(down, Policy.SSRC_ANY_INBOUND),
            fallback=calls,
            hooks=hooks,
        )
    finally:
        if transport is not None:
            transport.close()
        sfu.close()
        peer.close()


@dataclass
class Calls:
    """What a Track called back."""

    keyframes: int = 0
    missing: list[list[int]] = field(default_factory=list)

    def on_keyframe(self) -> None:
        self.keyframes += 1

    def on_missing(self, seqs: list[int]) -> None:
        self.missing.append(seqs)


def make_track(
    counters: _fastpath.Counters,
    *,
    codec: int = _fastpath.KEYFRAME_NONE,
    nack: bool = False,
    pt: int = PT,
    rtx_pt: int = RTX_PT,
    clock_rate: int = 90000,
) -> tuple[_fastpath.Track, Calls]:
    calls = Calls()
    track = _fastpath.Track(
        counters,
        keyframe_codec=codec,
        clock_rate=clock_rate,
        payload_type=pt,
        rtx_payload_type=rtx_pt,
        nack=nack,
        on_keyframe=calls.on_keyframe,
        on_missing=calls.on_missing,
    )
    return track, calls


def make_leg(
    net: Net,
    *,
    gated: bool = False,
    seq_start: int = 1000,
    ts_delta: int = 0,
    rtx_seq: int = 300,
    ssrc: int = LEG_SSRC,
    rtx_pt: int = LEG_RTX_PT,
    mid: bytes = MID,
    mid_id: int = MID_ID,
    abs_id: int = ABS_ID,
    level_id: int = LEVEL_ID,
    on_keyframe: Callable[[], None] | None = None,
) -> _fastpath.Leg:
    leg = _fastpath.Leg(
        net.counters, gated=gated, seq_start=seq_start, ts_delta=ts_delta, rtx_seq=rtx_seq
    )
    attach(
        leg,
        net.transport,
        ssrc=ssrc,
        rtx_payload_type=rtx_pt,
        mid=mid,
        mid_id=mid_id,
        abs_send_time_id=abs_id,
        audio_level_id=level_id,
        on_keyframe=on_keyframe,
    )
    return leg


def attach(leg: _fastpath.Leg, transport: _fastpath.Transport, **override: Any) -> None:
    """Attach ``leg`` with this file's subscriber parameters, some of them overridden."""
    params: dict[str, Any] = {
        "ssrc": LEG_SSRC,
        "rtx_ssrc": LEG_RTX_SSRC,
        "payload_type": LEG_PT,
        "rtx_payload_type": LEG_RTX_PT,
        "mid": MID,
        "mid_id": MID_ID,
        "abs_send_time_id": ABS_ID,
        "audio_level_id": LEVEL_ID,
        "on_keyframe": None,
    }
    leg.attach(transport, **(params | override))


def wired(
    net: Net, *, codec: int = _fastpath.KEYFRAME_NONE, nack: bool = False, **leg: Any
) -> tuple[_fastpath.Track, _fastpath.Leg, Calls]:
    track, calls = make_track(net.counters, codec=codec, nack=nack)
    forward = make_leg(net, **leg)
    track.add_leg(forward)
    return track, forward, calls


# ------------------------------------------------------------------------------------------
# Leg: header rewrite and extensions
# ------------------------------------------------------------------------------------------


def test_leg_rewrites_header_writes_its_extensions_and_keeps_the_rest(net: Net) -> None:
    track, leg, _ = wired(net, seq_start=40000, ts_delta=0xFFFFFF00)
    track.set_options(audio_level_id=PUB_LEVEL_ID)
    publisher_extensions = [
        (PUB_MID_ID, b"pub"),
        (PUB_LEVEL_ID, bytes([0x80 | 33])),
        (PUB_OTHER_ID, b"xyz"),
    ]
    track.ingest(
        rtp(
            500,
            ts=0x200,
            marker=True,
            csrcs=[7, 8],
            payload=b"hello",
            padding=4,
            extensions=publisher_extensions,
        )
    )
    wire1 = net.recv_wire()
    plain1 = net.peer_rx.unprotect(wire1)
    p1 = RtpPacket.parse(plain1, LEG_EXTENSIONS)
    assert (p1.ssrc, p1.payload_type, p1.sequence_number) == (LEG_SSRC, LEG_PT, 40000)
    assert p1.timestamp == 0x100  # 0x200 + 0xFFFFFF00 mod 2**32
    assert p1.marker == 1
    assert p1.csrc == [7, 8]
    assert (p1.payload, p1.padding_size) == (b"hello", 4)
    assert p1.extensions.mid == "v1"
    assert p1.extensions.audio_level == (True, 33)
    assert_recent_abs_send_time(p1.extensions.abs_send_time)
    profile, elements = extension_block(plain1)
    assert profile == 0xBEDE
    assert [i for i, _ in elements] == [MID_ID, ABS_ID, LEVEL_ID]  # publisher's ids all gone

    track.ingest(rtp(501, ts=0x300, payload=b"world!"))
    wire2 = net.recv_wire()
    plain2 = net.peer_rx.unprotect(wire2)
    p2 = RtpPacket.parse(plain2, LEG_EXTENSIONS)
    assert (p2.sequence_number, p2.timestamp, p2.marker) == (40001, 0x200, 0)
    assert (p2.payload, p2.padding_size, p2.csrc) == (b"world!", 0, [])
    assert p2.extensions.audio_level is None  # the publisher sent none this time
    assert [i for i, _ in extension_block(plain2)[1]] == [MID_ID, ABS_ID]
    net.assert_silent()

    assert net.counters.ingress_packets == 2
    assert net.counters.forwarded_packets == 2
    assert net.counters.forwarded_bytes == len(wire1) + len(wire2)
    assert (leg.packets, leg.octets) == (2, len(b"hello") + len(b"world!"))
    assert leg.last_in_ts == 0x300
    assert abs(leg.last_arrival - time.time()) < 5
    assert (leg.ssrc, leg.ts_delta, leg.forwarding) == (LEG_SSRC, 0xFFFFFF00, True)
    assert (track.media_ssrc, track.packets_received, track.leg_count) == (MEDIA_SSRC, 2, 1)


def test_leg_sequence_follows_input_across_the_wrap(net: Net) -> None:
    track, _, _ = wired(net, seq_start=0xFFFF)
    for seq in (7, 8, 10):
        track.ingest(rtp(seq))
    assert [net.recv().sequence_number for _ in range(3)] == [0xFFFF, 0, 2]  # gap preserved


def test_leg_uses_two_byte_extensions_for_large_ids(net: Net) -> None:
    track, _, _ = wired(net, mid_id=20, abs_id=ABS_ID, level_id=LEVEL_ID)
    track.ingest(rtp(1))
    plain = net.recv_plain()
    profile, elements = extension_block(plain)
    assert profile == 0x1000
    assert [i for i, _ in elements] == [20, ABS_ID]
    p = RtpPacket.parse(plain, extension_map(20, ABS_ID, LEVEL_ID))
    assert p.extensions.mid == "v1"
    assert_recent_abs_send_time(p.extensions.abs_send_time)


def test_leg_uses_two_byte_extensions_for_a_long_mid(net: Net) -> None:
    mid = b"m" * 20  # a one-byte element holds at most 16 bytes
    track, _, _ = wired(net, mid=mid)
    track.ingest(rtp(1))
    plain = net.recv_plain()
    assert extension_block(plain)[0] == 0x1000
    assert RtpPacket.parse(plain, LEG_EXTENSIONS).extensions.mid == mid.decode()


def test_leg_without_extension_ids_sends_no_extension(net: Net) -> None:
    track, _, _ = wired(net, mid=b"", mid_id=0, abs_id=0, level_id=0)
    track.set_options(audio_level_id=PUB_LEVEL_ID)
    track.ingest(rtp(1, payload=b"x", extensions=[(PUB_LEVEL_ID, b"\x10")]))
    plain = net.recv_plain()
    assert not plain[0] & 0x10
    assert plain[12:] == b"x"


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
# RTX: answering NACKs from the leg cache, unwrapping the publisher's retransmissions
# ------------------------------------------------------------------------------------------


def test_retransmit_sends_the_cached_packet_over_rtx(net: Net) -> None:
    track, leg, _ = wired(net, seq_start=1000, rtx_seq=300, ts_delta=5)
    track.ingest(rtp(50, ts=9000, marker=True, payload=b"payload", padding=3))
    original_plain = net.recv_plain()
    original = RtpPacket.parse(original_plain, LEG_EXTENSIONS)
    assert (original.sequence_number, original.padding_size) == (1000, 3)

    assert leg.retransmit(1000) is True
    plain = net.recv_plain()
    p = RtpPacket.parse(plain, LEG_EXTENSIONS)
    assert (p.payload_type, p.ssrc, p.sequence_number) == (LEG_RTX_PT, LEG_RTX_SSRC, 300)
    assert (p.timestamp, p.marker) == (9005, 1)
    assert p.payload == struct.pack("!H", 1000) + b"payload"
    assert p.padding_size == 0 and not plain[0] & 0x20  # padding removed
    assert p.extensions.mid == "v1"  # the header (and its extensions) is the original's
    assert extension_block(plain) == extension_block(original_plain)

    assert leg.retransmit(1000) is True
    assert net.recv().sequence_number == 301  # the RTX stream has its own counter
    assert net.counters.retransmitted == 2

    assert leg.retransmit(1001) is False  # never sent
    assert net.counters.nack_unanswered == 1
    net.assert_silent()


def test_retransmit_misses_a_packet_pushed_out_of_the_cache(net: Net) -> None:
    assert _fastpath.CACHE_SIZE == 512
    track, leg, _ = wired(net, seq_start=1000)
    track.ingest(rtp(50))
    track.ingest(rtp(50 + 512))  # same cache slot
    net.drain()
    assert leg.retransmit(1000) is False
    assert leg.retransmit(1512) is True
    assert net.recv().payload == struct.pack("!H", 1512) + b"media"
    assert net.counters.nack_unanswered == 1


def test_retransmit_without_rtx_or_with_a_bad_seq(net: Net) -> None:
    track, leg, _ = wired(net, rtx_pt=-1, seq_start=1000)
    track.ingest(rtp(1))
    net.drain()
    assert leg.retransmit(1000) is False
    assert net.counters.nack_unanswered == 1
    net.assert_silent()
    with pytest.raises(ValueError):
        leg.retransmit(0x10000)
    with pytest.raises(ValueError):
        leg.retransmit(-1)


def test_track_unwraps_publisher_rtx_as_the_original_packet(net: Net) -> None:
    track, _, calls = wired(net, nack=True, seq_start=2000)
    track.ingest(rtp(100, ts=500))
    track.ingest(rtp(103, ts=800))
    assert calls.missing == [[101, 102]]
    assert [net.recv().sequence_number for _ in range(2)] == [2000, 2003]

    track.ingest(rtx(7, 101, ts=600, marker=True, payload=b"again"))
    p = net.recv()
    assert (p.sequence_number, p.payload_type, p.ssrc) == (2001, LEG_PT, LEG_SSRC)
    assert (p.timestamp, p.marker, p.payload) == (600, 1, b"again")
    assert net.counters.rtx_received == 1
    assert track.missing() == [102]  # the retransmission filled the gap
    assert track.media_ssrc == MEDIA_SSRC  # RTX never replaces the media SSRC

    track.ingest(rtp(8, pt=RTX_PT, ssrc=RTX_SSRC, payload=b"", padding=8))
    net.assert_silent()  # RTX padding probe (no original seq): not forwarded
    assert net.counters.rtx_received == 1


def test_rtx_before_the_media_ssrc_is_known_is_not_forwarded(net: Net) -> None:
    track, _, _ = wired(net)
    track.ingest(rtx(1, 5))
    net.assert_silent()
    assert (net.counters.rtx_received, track.packets_received) == (0, 0)
    track.set_options(media_ssrc=MEDIA_SSRC)
    track.ingest(rtx(2, 5))
    assert net.recv().payload == b"media"


# ------------------------------------------------------------------------------------------
# NACK tracking
# ------------------------------------------------------------------------------------------


def test_nack_finds_gaps_forgets_late_packets_and_gives_up_after_three_asks() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(10))
    assert calls.missing == []
    track.ingest(rtp(14))
    assert calls.missing == [[11, 12, 13]]  # first ask
    track.ingest(rtp(12))  # late or retransmitted
    assert calls.missing == [[11, 12, 13]]
    assert track.missing() == [11, 13]
    assert track.nack_due() == [11, 13]  # second ask
    assert track.nack_due() == [11, 13]  # third ask
    assert track.nack_due() == []
    assert track.missing() == []


def test_nack_treats_a_huge_jump_as_a_restart() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(10))
    track.ingest(rtp(14))
    track.ingest(rtp(14 + 129))  # one forged packet must not cause a NACK storm
    assert calls.missing == [[11, 12, 13]]
    assert track.missing() == []
    track.ingest(rtp(14 + 129 + 128))  # the widest gap that still counts as loss
    assert calls.missing[-1] == list(range(144, 271))
    assert len(track.missing()) == 127


def test_nack_remembers_at_most_256_missing_packets_newest_first() -> None:
    track, _ = make_track(_fastpath.Counters(), nack=True)
    for seq in (0, 100, 200, 300):
        track.ingest(rtp(seq))
    missing = track.missing()
    expected = [s for s in range(300) if s % 100][-256:]
    assert missing == expected


def test_nack_across_the_sequence_wrap() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(65534))
    track.ingest(rtp(1))
    assert calls.missing == [[65535, 0]]
    track.ingest(rtp(65535))
    assert track.missing() == [0]


def test_no_nack_tracking_when_disabled() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=False)
    track.ingest(rtp(10))
    track.ingest(rtp(20))
    assert (calls.missing, track.missing(), track.nack_due()) == ([], [], [])


# ------------------------------------------------------------------------------------------
# Receive statistics (RFC 3550 A.1 / A.3 / A.8)
# ------------------------------------------------------------------------------------------


def test_report_loss_fraction_and_extended_highest_seq() -> None:
    counters = _fastpath.Counters()
    track, _ = make_track(counters)
    assert track.report() is None
    track.ingest(rtp(1, pt=PT + 10))  # not accepted: still nothing to report
    assert track.report() is None

    for seq in (10, 11, 14):
        track.ingest(rtp(seq))
    report = track.report()
    assert report is not None
    assert report[:3] == (2 * 256 // 5, 2, 14)  # 5 expected, 3 received
    report = track.report()
    assert report is not None and report[:3] == (0, 2, 14)  # fraction is per interval

    for seq in (15, 16, 20):
        track.ingest(rtp(seq))
    report = track.report()
    assert report is not None
    assert report[:3] == (3 * 256 // 6, 5, 20)  # interval: 6 expected, 3 received

    track.ingest(rtp(12))  # late
    report = track.report()
    assert report is not None and report[:3] == (0, 4, 20)


def test_report_extends_the_highest_seq_across_the_wrap() -> None:
    track, _ = make_track(_fastpath.Counters())
    for seq in (65534, 65535, 0, 1):
        track.ingest(rtp(seq))
    assert track.report() == (0, 0, 65536 + 1, 0)  # same timestamp: no jitter


def test_report_jitter_follows_rfc3550() -> None:
    track, _ = make_track(_fastpath.Counters(), clock_rate=90000)
    track.ingest(rtp(1, ts=0))
    track.ingest(rtp(2, ts=90000))  # one second of media arriving at once: |D| ~ 90000
    report = track.report()
    assert report is not None
    assert 90000 // 16 - 500 <= report[3] <= 90000 // 16  # J = |D| / 16 after one step


# ------------------------------------------------------------------------------------------
# Payload types and SSRCs
# ------------------------------------------------------------------------------------------


def test_unknown_payload_type_and_foreign_ssrc_are_not_forwarded(net: Net) -> None:
    track, _, _ = wired(net)
    track.ingest(rtp(1, pt=111))
    net.assert_silent()
    assert net.counters.unknown_payload_type == 1
    assert track.media_ssrc == 0

    track.ingest(rtp(2))
    net.drain()
    track.ingest(rtp(3, ssrc=0x99999999))
    net.assert_silent()
    assert (net.counters.ingress_packets, track.packets_received) == (1, 1)


def test_signalled_media_ssrc_filters_from_the_first_packet(net: Net) -> None:
    track, _, _ = wired(net)
    track.set_options(media_ssrc=0x77777777)
    track.ingest(rtp(1))
    net.assert_silent()
    track.ingest(rtp(2, ssrc=0x77777777))
    assert net.recv().sequence_number == 1000


def test_set_codec_changes_the_accepted_payload_types(net: Net) -> None:
    track, _, _ = wired(net)
    track.ingest(rtp(1))
    net.drain()
    track.set_codec(111, -1)
    track.ingest(rtp(2))  # in flight under the old mapping: still the media
    assert net.recv().sequence_number == 1001
    track.ingest(rtp(3, pt=111))
    p = net.recv()
    assert (p.sequence_number, p.payload_type) == (1002, LEG_PT)
    track.set_codec(112, -1)  # two changes on, the first mapping is gone
    track.ingest(rtp(4))
    track.ingest(rtx(5, 3))
    net.assert_silent()
    assert net.counters.unknown_payload_type == 2
    with pytest.raises(ValueError):
        track.set_codec(200, -1)
    with pytest.raises(ValueError):
        track.expect_codec(128, -1)


def test_a_renumbering_offer_is_told_apart_by_ssrc_not_payload_type(net: Net) -> None:
    """aiortc's offer renumbers VP8 96 -> 97 (97 was RTX): the browser sends VP8 as 97 on its
    media SSRC before the server has read the answer. That is media, never an RTX to unwrap."""
    track, _, calls = wired(net, nack=True)
    track.ingest(rtp(1))
    net.drain()
    track.expect_codec(RTX_PT, RTX_PT + 1)  # the offer: media 97, RTX 98
    track.ingest(rtp(2, pt=RTX_PT, payload=b"frame two"))
    p = net.recv()
    assert (p.sequence_number, p.payload_type, p.payload) == (1001, LEG_PT, b"frame two")
    track.ingest(rtp(4, pt=RTX_PT))
    assert calls.missing == [[3]]
    net.drain()
    track.ingest(rtx(9, 3, payload=b"old rtx"))  # the old RTX mapping is still RTX
    assert net.recv().payload == b"old rtx"
    track.ingest(rtp(6, pt=RTX_PT))
    net.drain()
    resent = rtp(10, pt=RTX_PT + 1, ssrc=RTX_SSRC, payload=struct.pack("!H", 5) + b"new rtx")
    track.ingest(resent)
    p = net.recv()
    assert (p.sequence_number, p.payload) == (1004, b"new rtx")

    track.set_codec(RTX_PT, RTX_PT + 1)  # the answer is read
    track.ingest(rtp(7))  # still in flight under 96
    track.ingest(rtp(8, pt=RTX_PT))
    assert [net.recv().sequence_number for _ in range(2)] == [1006, 1007]
    assert net.counters.unknown_payload_type == 0
    assert net.counters.rtx_received == 2
    assert track.media_ssrc == MEDIA_SSRC


def test_retransmissions_filling_no_gap_are_discarded(net: Net) -> None:
    track, _, _ = wired(net, nack=True)
    for seq in (10, 11, 13):
        track.ingest(rtp(seq))
    net.drain()
    track.ingest(rtx(1, 11))  # a bandwidth probe: the subscriber has it
    track.ingest(rtx(2, 14))  # never sent: a garbled header
    net.assert_silent()
    assert (net.counters.rtx_discarded, net.counters.rtx_received) == (2, 0)
    track.ingest(rtx(3, 12, payload=b"lost one"))
    assert net.recv().payload == b"lost one"
    track.ingest(rtx(4, 12))  # the gap is filled now
    net.assert_silent()
    assert (net.counters.rtx_discarded, net.counters.rtx_received) == (3, 1)


def test_without_nack_a_retransmission_must_be_recent_and_already_sent(net: Net) -> None:
    track, _, _ = wired(net)
    track.ingest(rtp(998))
    track.ingest(rtp(1000))
    net.drain()
    track.ingest(rtx(1, 1001))
    track.ingest(rtx(2, 1000 - 600))
    net.assert_silent()
    assert net.counters.rtx_discarded == 2
    track.ingest(rtx(3, 999))
    assert net.recv().payload == b"media"


# ------------------------------------------------------------------------------------------
# Transport.on_readable: the socket side
# ------------------------------------------------------------------------------------------


def test_routed_srtp_is_unprotected_and_forwarded_natively(net: Net) -> None:
    track, _, _ = wired(net, seq_start=500)
    assert net.transport.route(MEDIA_SSRC, track) is True
    net.send(rtp(42, payload=b"native"))
    p = net.recv()
    assert (p.sequence_number, p.ssrc, p.payload) == (500, LEG_SSRC, b"native")
    assert net.counters.native_datagrams == 1
    assert net.fallback == []


def test_tampered_or_replayed_srtp_counts_as_failure(net: Net) -> None:
    track, _, _ = wired(net)
    net.transport.route(MEDIA_SSRC, track)
    wire = bytearray(net.peer_tx.protect(rtp(1)))
    wire[-1] ^= 0x01  # break the GCM tag
    net.send_raw(bytes(wire))
    net.assert_silent()
    assert (net.counters.srtp_failures, net.counters.native_datagrams) == (1, 0)

    good = net.send(rtp(2))
    assert net.recv().payload == b"media"  # the session survived the forgery
    net.send_raw(good)  # replay
    net.assert_silent()
    assert (net.counters.srtp_failures, net.counters.native_datagrams) == (2, 1)
    assert net.fallback == []


def test_everything_not_routed_rtp_reaches_the_fallback_unchanged(net: Net) -> None:
    track, _, _ = wired(net)
    net.transport.route(MEDIA_SSRC, track)
    peer_addr = net.peer.getsockname()
    unrouted = net.peer_tx.protect(rtp(1, ssrc=0x5A5A5A5A))
    stun = bytes([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]) + bytes(range(12))
    dtls = bytes([22, 0xFE, 0xFD]) + bytes(20)
    short = bytes([0x80, PT, 0, 1, 0, 0, 0, 0, 0x11, 0x11, 0x11])  # 11 bytes
    datagrams = [unrouted, stun, dtls, short]
    for data in datagrams:
        net.send_raw(data)
    # an unauthenticated "SRTCP" sender report: RTCP is the native plane's, and this one fails
    net.send_raw(struct.pack("!BBHII", 0x80, 200, 6, 0x01020304, MEDIA_SSRC) + bytes(20))
    assert net.fallback == [(data, (peer_addr[0], peer_addr[1])) for data in datagrams]
    net.assert_silent()
    assert (net.counters.native_datagrams, net.counters.srtp_failures) == (0, 1)
    assert net.counters.rtcp_received == 0


def test_on_readable_drains_several_datagrams_per_wakeup(net: Net) -> None:
    track, _, _ = wired(net, seq_start=10)
    net.transport.route(MEDIA_SSRC, track)
    for seq in (1, 2, 3):
        net.send_raw(net.peer_tx.protect(rtp(seq)), pump=False)
    net.send_raw(b"\x00stun", pump=False)
    net.pump()
    assert [net.recv().sequence_number for _ in range(3)] == [10, 11, 12]
    assert [data for data, _ in net.fallback] == [b"\x00stun"]
    assert net.counters.native_datagrams == 3


def test_on_readable_handles_at_most_64_datagrams_per_call(net: Net) -> None:
    for i in range(70):
        net.send_raw(b"\x00" + bytes([i]), pump=False)
    net.pump()
    assert len(net.fallback) == 64  # one busy socket cannot starve the others
    net.pump()
    assert [d for d, _ in net.fallback] == [b"\x00" + bytes([i]) for i in range(70)]


def test_a_datagram_larger_than_the_buffer_is_not_silently_truncated(net: Net) -> None:
    before = net.counters.malformed
    net.send_raw(b"\x00" + bytes(2999))
    assert net.fallback == []  # never handed on cut short: dropped and counted
    assert net.counters.malformed == before + 1


def test_route_unroute_and_the_route_table_limit(net: Net) -> None:
    a, _ = make_track(net.counters)
    b, _ = make_track(net.counters)
    assert net.transport.routes() == []
    assert net.transport.route(MEDIA_SSRC, a) is True
    assert net.transport.route(RTX_SSRC, a) is True
    assert net.transport.route(0x12345678, b) is True
    assert net.transport.route(0x12345678, a) is True  # re-routed, not duplicated
    assert sorted(net.transport.routes()) == sorted([MEDIA_SSRC, RTX_SSRC, 0x12345678])
    net.transport.unroute(a)
    assert net.transport.routes() == []
    for ssrc in range(1, 17):
        assert net.transport.route(ssrc, b) is True
    assert net.transport.route(17, b) is False  # full: that SSRC stays on the Python path
    assert len(net.transport.routes()) == 16
    net.transport.unroute(b)
    assert net.transport.routes() == []

    net.transport.route(MEDIA_SSRC, a)
    net.transport.unroute(a)
    data = net.peer_tx.protect(rtp(1))
    net.send_raw(data)  # no longer routed: Python sees it
    assert [d for d, _ in net.fallback] == [data]


# ------------------------------------------------------------------------------------------
# Close semantics
# ------------------------------------------------------------------------------------------


def test_transport_close_is_idempotent_and_stops_sending(net: Net) -> None:
    track, leg, _ = wired(net)
    net.transport.route(MEDIA_SSRC, track)
    own_fd = net.transport.fd
    assert own_fd >= 0 and own_fd != net.sfu.fileno()  # a dup of the socket
    net.transport.close()
    net.transport.close()
    assert (net.transport.fd, net.transport.closed) == (-1, 1)
    assert net.transport.routes() == []
    assert net.transport.route(MEDIA_SSRC, track) is False
    net.sfu.getsockname()  # the original socket is still ours and open

    track.ingest(rtp(1))
    net.assert_silent()
    assert (net.counters.forwarded_packets, leg.packets) == (0, 0)
    assert leg.retransmit(1000) is False
    net.transport.on_readable()  # nothing to read with, no error


def test_leg_close_then_attach_raises(net: Net) -> None:
    track, leg, _ = wired(net)
    track.ingest(rtp(1))
    net.drain()
    leg.close()
    leg.close()
    assert leg.closed == 1
    assert leg.retransmit(1000) is False
    track.ingest(rtp(2))
    net.assert_silent()
    with pytest.raises(RuntimeError):
        attach(leg, net.transport)


def test_track_close_drops_legs_and_ignores_packets(net: Net) -> None:
    track, leg, calls = wired(net, nack=True)
    assert track.leg_count == 1
    track.add_leg(leg)  # adding twice is a no-op
    assert track.leg_count == 1
    track.close()
    track.close()
    assert (track.closed, track.leg_count) == (1, 0)
    track.ingest(rtp(1))
    track.ingest(rtp(5))
    net.assert_silent()
    assert (calls.missing, track.packets_received) == ([], 0)
    with pytest.raises(RuntimeError):
        track.add_leg(leg)


def test_remove_leg_stops_forwarding_to_it(net: Net) -> None:
    track, leg, _ = wired(net)
    track.remove_leg(leg)
    track.remove_leg(leg)  # unknown leg: no-op
    assert track.leg_count == 0
    track.ingest(rtp(1))
    net.assert_silent()


# ------------------------------------------------------------------------------------------
# Pump: the GIL-free I/O thread
# ------------------------------------------------------------------------------------------


@pytest.fixture
def pump() -> Iterator[_fastpath.Pump]:
    io = _fastpath.Pump()
    try:
        yield io
    finally:
        io.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def notified(io: _fastpath.Pump, timeout: float = 0.5) -> bool:
    readable, _, _ = select.select([io.notify_fd], [], [], timeout)
    return bool(readable)


def fill_queue(net: Net, io: _fastpath.Pump, count: int) -> list[bytes]:
    """Queue ``count`` fallback events, a few datagrams at a time (the socket buffer is small)."""
    sent: list[bytes] = []
    while len(sent) < count:
        for _ in range(min(16, count - len(sent))):
            sent.append(b"\x00" + struct.pack("!H", len(sent)))
            net.send_raw(sent[-1], pump=False)
        total = len(sent)
        assert wait_for(lambda: io.pending + io.dropped_events == total)  # noqa: B023
    return sent


def test_pump_forwards_media_on_its_thread_and_queues_the_rest(
    net: Net, pump: _fastpath.Pump
) -> None:
    track, _, calls = wired(net, nack=True, seq_start=10)
    assert net.transport.route(MEDIA_SSRC, track)
    pump.register(net.transport)
    assert pump.running == 1
    net.send_raw(net.peer_tx.protect(rtp(1)), pump=False)
    assert net.recv().sequence_number == 10  # nobody called on_readable
    net.send_raw(net.peer_tx.protect(rtp(4)), pump=False)
    assert net.recv().sequence_number == 13
    stun = bytes([0x00, 0x01, 0x00, 0x00]) + bytes(16)
    net.send_raw(stun, pump=False)
    assert wait_for(lambda: pump.pending == 2)  # the NACK list and the STUN datagram
    assert notified(pump)
    assert (calls.missing, net.fallback) == ([], [])  # Python runs only in dispatch()
    pump.dispatch()
    assert calls.missing == [[2, 3]]
    assert net.fallback == [(stun, net.peer.getsockname())]
    assert pump.pending == 0
    assert not notified(pump, 0.05)
    assert net.counters.native_datagrams == 2
    assert pump.wakeups >= 1


def test_pump_queues_keyframe_requests(net: Net, pump: _fastpath.Pump) -> None:
    track, calls = make_track(net.counters, codec=_fastpath.KEYFRAME_VP8)
    track.add_leg(make_leg(net, gated=True))
    net.transport.route(MEDIA_SSRC, track)
    pump.register(net.transport)
    net.send_raw(net.peer_tx.protect(rtp(1, payload=VP8_DELTA)), pump=False)
    assert notified(pump)
    assert calls.keyframes == 0
    pump.dispatch()
    assert calls.keyframes == 1
    net.assert_silent()
    net.send_raw(net.peer_tx.protect(rtp(2, payload=VP8_KEY)), pump=False)
    assert net.recv().payload == VP8_KEY


def test_pump_register_unregister_close_and_stop(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    with pytest.raises(RuntimeError):
        pump.register(net.transport)
    pump.unregister(net.transport)
    pump.unregister(net.transport)  # idempotent
    net.send_raw(b"\x00one", pump=False)
    assert not notified(pump, 0.1)  # the pump no longer reads this socket
    net.pump()  # the event loop's reader would
    assert [d for d, _ in net.fallback] == [b"\x00one"]

    pump.register(net.transport)
    net.transport.close()  # detaches from the pump
    with pytest.raises(RuntimeError):
        pump.register(net.transport)
    pump.stop()
    pump.stop()
    assert pump.running == 0


def test_pump_counts_events_it_cannot_queue(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    ring = _fastpath.RING_SIZE
    sent = fill_queue(net, pump, ring + 4)
    assert (pump.pending, pump.dropped_events) == (ring, 4)
    pump.dispatch()
    assert [d for d, _ in net.fallback] == sent[:ring]
    assert pump.pending == 0


def test_pump_dispatch_leaves_no_event_unannounced(net: Net, pump: _fastpath.Pump) -> None:
    pump.register(net.transport)
    sent = fill_queue(net, pump, _fastpath.RING_SIZE)
    late: list[bool] = []

    def meanwhile(data: bytes) -> None:
        if data == sent[0]:  # while dispatch() delivers the first event, one more arrives
            net.send_raw(b"\x00late", pump=False)
            late.append(wait_for(lambda: pump.pending == _fastpath.RING_SIZE))

    net.hooks.append(meanwhile)
    pump.dispatch()
    assert late == [True]
    assert pump.pending == 0 or notified(pump)  # else nobody calls dispatch() again


# ------------------------------------------------------------------------------------------
# Bad input never crashes
# ------------------------------------------------------------------------------------------

rtp_like = st.builds(
    lambda b0, pt, rest: bytes([0x80 | b0, pt]) + rest,
    st.integers(0, 0x3F),  # P, X and CC bits
    st.sampled_from([PT, RTX_PT, 0x80 | PT, 0x80 | RTX_PT, 0, 127]),
    st.binary(max_size=96),
)


@fuzz(300)
@given(data=st.one_of(st.binary(max_size=64), rtp_like))
def test_ingest_random_bytes(net: Net, data: bytes) -> None:
    track, _ = make_track(net.counters, codec=_fastpath.KEYFRAME_VP8, nack=True)
    seq_start = next(SEQUENCE) & 0xFFFF
    leg = make_leg(net, seq_start=seq_start)
    track.add_leg(leg)
    before = net.counters.malformed
    track.ingest(data)
    track.ingest(data)  # a duplicate, too
    assert net.counters.malformed - before == (0 if well_formed(data) else 2)
    leg.retransmit(seq_start)  # RTX-wraps whatever was forwarded
    track.report()
    track.nack_due()
    track.close()
    net.drain()


def test_ingest_rejects_oversized_packets() -> None:
    counters = _fastpath.Counters()
    track, _ = make_track(counters)
    track.ingest(rtp(1, payload=bytes(1500)))
    assert counters.malformed == 1
    track.ingest(bytearray(rtp(2)))  # any buffer will do
    assert counters.ingress_packets == 1


def vp8_reference(payload: bytes) -> bool:
    """The former pure-Python VP8 parser (RFC 7741)."""
    n = len(payload)
    if n < 1 or not payload[0] & 0x10 or payload[0] & 0x07:
        return False
    i = 1
    if payload[0] & 0x80:
        if n < 2:
            return False
        x, i = payload[1], 2
        if x & 0x80:
            if n <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return n > i and not payload[i] & 0x01


def h264_reference(payload: bytes) -> bool:
    """The former pure-Python H.264 parser (RFC 6184)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            i += 2
            if size == 0 or i + size > len(payload):
                return False
            if payload[i] & 0x1F in (5, 7):
                return True
            i += size
        return False
    if nal == 28:
        return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return False


@fuzz(500)
@given(payload=st.binary(max_size=48))
def test_keyframe_parsers_on_random_payloads(payload: bytes) -> None:
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_VP8, payload) == vp8_reference(payload)
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_H264, payload) == h264_reference(payload)
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_NONE, payload) is False
    assert _fastpath.is_keyframe_start(99, payload) is False


def looks_like_rtp(d: bytes) -> bool:
    """What the transport takes for SRTP or SRTCP (RFC 5761/7983 demultiplexing): with its SSRC
    routed (RTP) or always (RTCP, which the data plane handles itself)."""
    return len(d) >= 12 and 128 <= d[0] < 192


@fuzz(200)
@given(data=st.binary(max_size=200))
def test_random_datagrams_with_their_ssrc_routed(net: Net, data: bytes) -> None:
    track, _ = make_track(net.counters)
    if len(data) >= 12:
        assert net.transport.route(struct.unpack_from("!I", data, 8)[0], track)
    try:
        failures, calls = net.counters.srtp_failures, len(net.fallback)
        net.send_raw(data)
        if looks_like_rtp(data):  # random bytes never authenticate
            assert net.counters.srtp_failures == failures + 1
            assert len(net.fallback) == calls
        else:
            assert net.counters.srtp_failures == failures
            assert net.fallback[calls:] == [(data, net.peer.getsockname())]
    finally:
        net.transport.unroute(track)


@fuzz(200)
@given(
    b0=st.integers(0, 0x2F),  # P and CC bits, no extension
    pt=st.sampled_from([PT, RTX_PT, 0x80 | PT, 5]),
    body=st.binary(max_size=120),
)
def test_random_authenticated_packets_through_the_socket(
    net: Net, b0: int, pt: int, body: bytes
) -> None:
    seq = next(SEQUENCE)
    plain = struct.pack("!BBHII", 0x80 | b0, pt, seq, 1, MEDIA_SSRC) + body
    try:
        wire = net.peer_tx.protect(plain)
    except SrtpError:
        return  # libsrtp refuses to protect it (CSRCs past the end): nothing to send
    track, _ = make_track(net.counters, codec=_fastpath.KEYFRAME_H264, nack=True)
    track.add_leg(make_leg(net, seq_start=seq))
    assert net.transport.route(MEDIA_SSRC, track)
    try:
        native, malformed = net.counters.native_datagrams, net.counters.malformed
        net.send_raw(wire)
        assert net.counters.native_datagrams == native + 1
        assert net.counters.malformed == malformed + (0 if well_formed(plain) else 1)
    finally:
        net.transport.unroute(track)
        net.drain()


def test_bad_constructor_arguments_raise_value_error(net: Net) -> None:
    counters = _fastpath.Counters()

    def track(**changes: Any) -> _fastpath.Track:
        args: dict[str, Any] = {
            "keyframe_codec": _fastpath.KEYFRAME_NONE,
            "clock_rate": 48000,
            "payload_type": 111,
            "rtx_payload_type": -1,
            "nack": False,
            "on_keyframe": lambda: None,
            "on_missing": lambda seqs: None,
        }
        return _fastpath.Track(counters, **(args | changes))

    track()
    for bad in ({"payload_type": 200}, {"clock_rate": 0}, {"rtx_payload_type": 128}):
        with pytest.raises(ValueError):
            track(**bad)
    with pytest.raises(ValueError):
        track(keyframe_codec=7)

    def transport(**changes: Any) -> _fastpath.Transport:
        args: dict[str, Any] = {
            "fd": net.sfu.fileno(),
            "remote_host": "127.0.0.1",
            "remote_port": net.peer.getsockname()[1],
            "rx": 1,
            "tx": 1,
            "keep": None,
            "fallback": lambda data, addr: None,
            "counters": counters,
        }
        made = _fastpath.Transport(**(args | changes))
        made.close()
        return made

    for bad_transport in (
        {"remote_host": "localhost"},
        {"remote_host": "not an address"},
        {"remote_port": 0},
        {"remote_port": 70000},
        {"rx": 0},
        {"fallback": "not callable"},
    ):
        with pytest.raises(ValueError):
            transport(**bad_transport)
    with pytest.raises(OSError):
        transport(fd=-1)

    leg = _fastpath.Leg(counters, gated=False, seq_start=0, ts_delta=0, rtx_seq=0)
    attach: dict[str, Any] = {
        "ssrc": 1,
        "rtx_ssrc": 2,
        "payload_type": 100,
        "rtx_payload_type": 101,
        "mid": b"0",
        "mid_id": 1,
        "abs_send_time_id": 2,
        "audio_level_id": 3,
    }
    for bad_leg in ({"payload_type": 200}, {"mid": bytes(256)}, {"mid_id": 256}):
        with pytest.raises(ValueError):
            leg.attach(net.transport, **(attach | bad_leg))


@pytest.mark.parametrize(
    "code",
    [
        "f.Track.__new__(f.Track).ingest(b'')",
        "f.Leg.__new__(f.Leg).retransmit(1)",
    ],
)
def test_objects_without_init_do_not_crash_the_process(code: str) -> None:
    program = (
        f"from fortrolig.media import _fastpath as f\ntry:\n    {code}\nexcept Exception:\n    pass"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


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


# ------------------------------------------------------------------------------------------
# The data-plane lock with more than one thread
# ------------------------------------------------------------------------------------------


# A deadlock blocks in C, where the default (signal) timeout cannot interrupt: the thread
# method ends the run with a stack dump instead of hanging it.
@pytest.mark.timeout(30, method="thread")
def test_a_second_python_thread_never_deadlocks_on_the_lock(net: Net) -> None:
    """locked_call runs libsrtp through cffi, which releases the GIL while holding the lock; a
    second Python thread then waits for the lock. It must wait with the GIL released, or the
    first thread could never return (the per-test timeout turns a deadlock into a failure)."""
    track, _ = make_track(net.counters, nack=True)
    session = srtp_session(srtp_key("lock test"), Policy.SSRC_ANY_OUTBOUND)
    stop = threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            while not stop.is_set():
                track.ingest(rtp(next(SEQUENCE) % 65536))
                track.report()
                track.nack_due()
        except BaseException as exc:  # reported below, not swallowed
            errors.append(exc)

    worker = threading.Thread(target=other)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL over often, also inside locked_call
    worker.start()
    try:
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline:
            _fastpath.locked_call(session.protect, rtp(i % 65536, ssrc=0x5151))
            i += 1
    finally:
        stop.set()
        worker.join(5)
        sys.setswitchinterval(interval)
    assert not worker.is_alive() and errors == []
    assert track.packets_received > 0


def test_the_pump_cannot_be_stopped_from_a_callback_under_the_lock(
    net: Net, pump: _fastpath.Pump
) -> None:
    """An inline-mode callback runs with the lock held; joining the pump thread there would wait
    for itself, so stop() refuses instead of hanging."""
    refused: list[str] = []

    def stop_from_callback(_: bytes) -> None:
        try:
            pump.stop()
        except RuntimeError as exc:
            refused.append(str(exc))

    net.hooks.append(stop_from_callback)
    net.send_raw(b"\x00stop")
    assert refused and "callback" in refused[0]
    assert pump.running == 1
    pump.stop()
    assert pump.running == 0


# ------------------------------------------------------------------------------------------
# RTCP from the peer (SRTCP, handled natively)
# ------------------------------------------------------------------------------------------


def send_rtcp(net: Net, *packets: bytes) -> None:
    """One compound SRTCP packet from the peer, read by the SFU."""
    net.send_raw(net.peer_tx.protect_rtcp(b"".join(packets)))


def fir(target_ssrc: int) -> bytes:
    """An RFC 5104 FIR (aiortc has no class for it): media SSRC 0, the target in the FCI."""
    return struct.pack("!BBHII", 0x84, 206, 4, 0x9999, 0) + struct.pack("!IB3x", target_ssrc, 1)


def test_receiver_report_and_remb_update_the_leg(net: Net) -> None:
    _, leg, _ = wired(net)
    assert (leg.remb_bps, leg.rtt) == (0, -1)
    sent_at = time.time() - 0.120
    leg.note_sr(0x12345678, sent_at)
    report = RtcpReceiverInfo(
        ssrc=LEG_SSRC,
        fraction_lost=25,
        packets_lost=3,
        highest_sequence=1000,
        jitter=77,
        lsr=0x12345678,
        dlsr=int(0.020 * 65536),  # the subscriber held it 20 ms
    )
    other = RtcpReceiverInfo(
        ssrc=0x7777, fraction_lost=200, packets_lost=1, highest_sequence=1, jitter=1, lsr=0, dlsr=0
    )
    rr = bytes(RtcpRrPacket(ssrc=0x9999, reports=[other, report]))
    remb = bytes(
        RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=0x9999, media_ssrc=0, fci=pack_remb_fci(750_000, [LEG_SSRC])
        )
    )
    before = time.monotonic()
    send_rtcp(net, rr, remb)
    assert (leg.fraction_lost, leg.jitter) == (25, 77)
    assert 0.09 < leg.rtt < 0.2  # 120 ms since the SR, minus the 20 ms it was held
    assert abs(leg.remb_bps - 750_000) < 750_000 * 0.01  # REMB's mantissa/exponent rounding
    assert leg.remb_at >= before
    assert (net.counters.rtcp_received, net.counters.remb_received) == (1, 1)
    assert net.counters.native_datagrams == 1 and net.fallback == []


def test_a_receiver_report_echoing_another_sr_gives_no_rtt(net: Net) -> None:
    _, leg, _ = wired(net)
    leg.note_sr(0x1111, time.time())
    info = RtcpReceiverInfo(
        ssrc=LEG_SSRC, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0, lsr=0x2222,
        dlsr=0,
    )  # fmt: skip
    send_rtcp(net, bytes(RtcpRrPacket(ssrc=0x9999, reports=[info])))
    assert leg.rtt == -1


def test_nack_over_srtcp_is_answered_over_rtx(net: Net) -> None:
    track, _, _ = wired(net, seq_start=500)
    net.transport.route(MEDIA_SSRC, track)
    for seq in (1, 2, 3):
        net.send(rtp(seq, payload=bytes([seq]) * 20))
    net.drain()
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=0x9999, media_ssrc=LEG_SSRC)
    nack.lost = [500, 502, 999]  # two cached, one never sent
    send_rtcp(net, bytes(nack))
    resent = [RtpPacket.parse(net.recv_plain(), LEG_EXTENSIONS) for _ in range(2)]
    assert [(p.payload_type, p.ssrc) for p in resent] == [(LEG_RTX_PT, LEG_RTX_SSRC)] * 2
    assert [struct.unpack("!H", p.payload[:2])[0] for p in resent] == [500, 502]
    assert [p.payload[2:] for p in resent] == [bytes([1]) * 20, bytes([3]) * 20]
    net.assert_silent()
    assert net.counters.nack_received == 1
    assert (net.counters.retransmitted, net.counters.nack_unanswered) == (2, 1)


def test_pli_and_fir_ask_the_legs_track_for_a_keyframe(net: Net) -> None:
    asked: list[str] = []
    make_leg(net, ssrc=0x5555)  # another leg on the same transport, not named
    leg = make_leg(net, on_keyframe=lambda: asked.append("keyframe"))
    send_rtcp(net, bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x9999, media_ssrc=LEG_SSRC)))
    assert asked == ["keyframe"]
    send_rtcp(net, fir(LEG_SSRC))
    assert asked == ["keyframe"] * 2
    send_rtcp(net, bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x9999, media_ssrc=0x4242)))
    assert asked == ["keyframe"] * 2  # a PLI for no leg of ours
    assert (net.counters.pli_received, net.counters.fir_received) == (2, 1)
    leg.close()
    send_rtcp(net, bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x9999, media_ssrc=LEG_SSRC)))
    assert asked == ["keyframe"] * 2  # a closed leg is no longer found


def test_the_publishers_sender_report_reaches_its_track(net: Net) -> None:
    track, _, _ = wired(net)
    net.transport.route(MEDIA_SSRC, track)
    net.send(rtp(1))
    assert track.has_sr == 0
    info = RtcpSenderInfo(
        ntp_timestamp=0x0123456789ABCDEF, rtp_timestamp=90_000, packet_count=1, octet_count=5
    )
    send_rtcp(net, bytes(RtcpSrPacket(ssrc=MEDIA_SSRC, sender_info=info)))
    assert (track.has_sr, track.sr_ntp, track.sr_rtp) == (1, 0x0123456789ABCDEF, 90_000)
    assert abs(track.sr_arrived - time.time()) < 1
    # an SR of an SSRC that is routed but is not the track's media SSRC (its RTX) is ignored
    net.transport.route(RTX_SSRC, track)
    send_rtcp(net, bytes(RtcpSrPacket(ssrc=RTX_SSRC, sender_info=info)))
    assert track.sr_rtp == 90_000


def test_rtcp_handed_in_by_python_takes_the_same_path(net: Net) -> None:
    _, leg, _ = wired(net)
    info = RtcpReceiverInfo(
        ssrc=LEG_SSRC, fraction_lost=9, packets_lost=0, highest_sequence=1, jitter=4, lsr=0,
        dlsr=0,
    )  # fmt: skip
    net.transport.rtcp(bytes(RtcpRrPacket(ssrc=0x9999, reports=[info])))
    assert (leg.fraction_lost, leg.jitter) == (9, 4)
    with pytest.raises(ValueError):
        net.transport.rtcp(bytes(4096))


def test_pump_queues_keyframe_requests_from_rtcp(net: Net, pump: _fastpath.Pump) -> None:
    asked: list[int] = []
    make_leg(net, on_keyframe=lambda: asked.append(1))
    pump.register(net.transport)
    pli = bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x9999, media_ssrc=LEG_SSRC))
    net.send_raw(net.peer_tx.protect_rtcp(pli), pump=False)
    assert notified(pump)
    assert asked == []  # nothing runs Python on the I/O thread
    pump.dispatch()
    assert asked == [1]


@fuzz(300)
@given(data=st.binary(max_size=300))
def test_random_rtcp_never_crashes(data: bytes) -> None:
    counters = _fastpath.Counters()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        session = srtp_session(srtp_key("fuzz"), Policy.SSRC_ANY_OUTBOUND)
        transport = _fastpath.Transport(
            sock.fileno(), "127.0.0.1", 9, srtp_pointer(session), srtp_pointer(session),
            session, lambda d, a: None, counters,
        )  # fmt: skip
        try:
            track, _ = make_track(counters, nack=True)
            transport.route(MEDIA_SSRC, track)
            leg = _fastpath.Leg(counters, gated=False, seq_start=1, ts_delta=0, rtx_seq=1)
            attach(leg, transport, on_keyframe=lambda: None)
            # the SSRCs a real packet would name, so parsing reaches the handlers
            transport.rtcp(data.replace(b"\xaa\xaa\xaa\xaa", struct.pack("!I", LEG_SSRC)))
            assert counters.rtcp_received == 1
        finally:
            transport.close()

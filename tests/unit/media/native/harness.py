"""What the native data plane's tests share: two UDP sockets on 127.0.0.1 with real libsrtp
sessions (AES-256-GCM, one key per direction), packet builders and Track/Leg factories.

The "peer" socket protects what it sends with its own outbound session and unprotects what the
SFU sent with an inbound session of the SFU's transmit key. What went over the wire is parsed
with aiortc. No event loop: ``Transport.on_readable()`` is called by hand once the SFU socket is
readable. The ``net`` and ``pump`` fixtures are in tests/unit/media/conftest.py.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtpPacket,
    unpack_header_extensions,
)
from hypothesis import HealthCheck, settings
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi

from fortrolig.media import _fastpath
from tests.support.polling import held_within

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
        assert held_within(lambda: io.pending + io.dropped_events == total, 2.0)  # noqa: B023
    return sent

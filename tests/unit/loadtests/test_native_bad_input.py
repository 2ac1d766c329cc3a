"""The native load participant's receive path never crashes on bad input (hypothesis).

Real libsrtp sessions (pylibsrtp, AES-256-GCM as on the wire) and real loopback UDP sockets;
datagrams go in through ``Peer.feed`` (the same per-datagram code the socket drain runs) and
through the socket and ``Engine.on_readable``. Every datagram that is not well formed is
counted as bad, none is counted as received media, and the peer keeps working afterwards.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from fortrolig.loadtests import native
from tests.unit.media.native.harness import well_formed  # the data plane tests' RFC 3550 check

pytestmark = pytest.mark.skipif(not native.available(), reason="the C extension is not built")

if native.available():
    from fortrolig.loadtests import _loadpath

AUDIO_PT, VIDEO_PT, RTX_PT = 111, 96, 97
BAD = ("malformed", "truncated", "garbage", "srtp_failures", "unknown_pt", "unknown_ssrc")
KEY = os.urandom(44)  # AES-256-GCM: 32-byte key + 12-byte salt
SSRCS = itertools.count(1000)


def session(direction: int, key: bytes = KEY) -> Session:
    return Session(
        Policy(key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    )


@dataclass
class Rig:
    """A Peer on a loopback socket, the 'server' socket it talks to, and the server's SRTP."""

    peer: Any
    sock: socket.socket
    remote: socket.socket
    server_tx: Session = field(default_factory=lambda: session(Policy.SSRC_ANY_OUTBOUND))
    fallback: list[bytes] = field(default_factory=list)

    def counters(self) -> dict[str, int]:
        return dict(self.peer.stats()["received"])

    def protect(self, plain: bytes) -> bytes:
        return bytes(self.server_tx.protect(plain))


@pytest.fixture
def rig() -> Iterator[Rig]:
    native._bind()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    remote = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    remote.bind(("127.0.0.1", 0))
    rx, tx = session(Policy.SSRC_ANY_INBOUND), session(Policy.SSRC_ANY_OUTBOUND, os.urandom(44))
    got: list[bytes] = []
    peer = _loadpath.Peer(
        sock.fileno(),
        "127.0.0.1",
        remote.getsockname()[1],
        native.srtp_pointer(rx),
        native.srtp_pointer(tx),
        (rx, tx),
        lambda data, addr: got.append(data),
    )
    peer.set_payload_types([AUDIO_PT], [VIDEO_PT], [RTX_PT])
    r = Rig(peer, sock, remote, fallback=got)
    yield r
    peer.close()
    sock.close()
    remote.close()


def rtp(seq: int, ssrc: int, pt: int = VIDEO_PT, payload: bytes = b"\x10" + bytes(99)) -> bytes:
    return struct.pack("!BBHII", 0x80, 0x80 | pt, seq & 0xFFFF, seq * 3000, ssrc) + payload


rtp_like = st.builds(
    lambda b0, pt, rest: bytes([0x80 | b0, pt]) + rest,
    st.integers(0, 0x3F),  # P, X and CC bits
    st.sampled_from([VIDEO_PT, AUDIO_PT, RTX_PT, 0x80 | VIDEO_PT, 0, 127]),
    st.binary(max_size=96),
)
fuzz = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@fuzz
@given(data=st.one_of(st.binary(max_size=80), rtp_like))
def test_unprotected_garbage_is_never_counted_as_media(rig: Rig, data: bytes) -> None:
    before = rig.counters()
    rig.peer.feed(data)
    after = rig.counters()
    assert after["datagrams"] == before["datagrams"] + 1
    assert after["rtp"] == before["rtp"] and after["rtcp"] == before["rtcp"]
    went = sum(after[k] - before[k] for k in (*BAD, "fallback"))
    assert went == 1  # exactly one verdict per datagram
    if data and (data[0] < 4 or 19 < data[0] < 64):
        assert rig.fallback[-1] == data  # STUN and DTLS go on to aioice unchanged


@fuzz
@given(plain=rtp_like)
def test_protected_rtp_counts_only_well_formed_headers(rig: Rig, plain: bytes) -> None:
    ssrc = next(SSRCS)
    plain = plain[:8] + struct.pack("!I", ssrc) + plain[12:] if len(plain) >= 12 else plain
    try:
        wire = rig.protect(plain)
    except SrtpError:
        return  # libsrtp refuses to protect it: nothing to feed
    before = rig.counters()
    rig.peer.feed(wire)
    after = rig.counters()
    header = _loadpath.rtp_header(plain)
    assert (header is not None) == well_formed(plain)
    counted = after["rtp"] - before["rtp"]
    bad = sum(after[k] - before[k] for k in BAD)
    assert counted + bad == 1
    if counted:
        assert header is not None and plain[1] & 0x7F in (VIDEO_PT, AUDIO_PT, RTX_PT)


def test_every_truncation_of_a_good_packet_is_bad(rig: Rig) -> None:
    wire = rig.protect(rtp(1, 42))
    for n in range(len(wire)):
        rig.peer.feed(wire[:n])
    c = rig.counters()
    assert c["rtp"] == 0
    assert c["datagrams"] == len(wire)
    assert sum(c[k] for k in BAD) == len(wire)
    rig.peer.feed(wire)  # the whole packet still counts: nothing was spoilt
    assert rig.counters()["rtp"] == 1
    streams = rig.peer.stats()["streams"]
    assert [(s["ssrc"], s["kind"], s["packets"], s["bytes"]) for s in streams] == [
        (42, "video", 1, len(wire))
    ]


def test_lying_rtcp_lengths_are_malformed(rig: Rig) -> None:
    rig.peer.set_sender(
        _loadpath.Clip(True, [b"\x00" * 10], [True], 3000, 1 / 30, []), 77, VIDEO_PT, 0, b"", 1, 1
    )
    pli = struct.pack("!BBHII", 0x81, 206, 2, 5, 77)
    lying = [
        struct.pack("!BBHI", 0x81, 206, 40, 5) + bytes(4),  # length beyond the datagram
        struct.pack("!BBHI", 0x80, 201, 1, 5) + b"\x40\xc9\x00\x00",  # then version 1
        struct.pack("!BBHI", 0x9F, 201, 1, 5),  # 31 report blocks in 8 bytes
        struct.pack("!BBHI", 0x80, 200, 1, 5),  # a sender report of 8 bytes
        pli + b"\x80",  # a trailing byte shorter than a header
    ]
    for plain in lying:
        rig.peer.feed(bytes(rig.server_tx.protect_rtcp(plain)))
    c = rig.counters()
    assert c["rtcp"] == 0 and c["malformed"] == 5
    assert c["pli"] == 1  # the good PLI before the trailing byte was still heard
    rig.peer.feed(bytes(rig.server_tx.protect_rtcp(pli)))
    assert rig.counters()["pli"] == 2 and rig.counters()["rtcp"] == 1
    rig.peer.feed(pli + bytes(30))  # not protected: fails authentication
    assert rig.counters()["srtp_failures"] == 1


def test_oversized_and_truncated_datagrams_through_the_socket(rig: Rig) -> None:
    engine = _loadpath.Engine()
    engine.add(rig.peer)
    try:
        addr = rig.sock.getsockname()
        rig.remote.sendto(b"\x80" * 3000, addr)  # beyond the 2048-byte buffer: MSG_TRUNC
        rig.remote.sendto(b"", addr)  # empty
        rig.remote.sendto(b"\x90\x60", addr)  # RTP-like, 2 bytes
        rig.remote.sendto(rig.protect(rtp(5, 43)), addr)
        engine.on_readable()
        c = rig.counters()
        assert c["datagrams"] == 4
        assert c["malformed"] == 1 and c["truncated"] == 2 and c["rtp"] == 1
    finally:
        engine.remove(rig.peer)
        engine.close()


def test_feed_refuses_more_than_a_datagram(rig: Rig) -> None:
    rig.peer.feed(bytes(5000))
    assert rig.counters()["malformed"] == 1


def test_unknown_payload_types_and_too_many_ssrcs(rig: Rig) -> None:
    rig.peer.feed(rig.protect(rtp(1, 9, pt=50)))
    for ssrc in range(100, 120):  # 16 streams at most per peer
        rig.peer.feed(rig.protect(rtp(1, ssrc)))
    c = rig.counters()
    assert c["unknown_pt"] == 1 and c["rtp"] == 16 and c["unknown_ssrc"] == 4

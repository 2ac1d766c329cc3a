"""Transport.on_readable: the socket side of the native data plane."""

from __future__ import annotations

import struct

from tests.unit.media.native.harness import (
    LEG_SSRC,
    MEDIA_SSRC,
    PT,
    RTX_SSRC,
    Net,
    make_track,
    rtp,
    wired,
)

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

"""A subscriber leg: header rewrite, extensions, and what closing means."""

from __future__ import annotations

import time

import pytest
from aiortc.rtp import (
    RtpPacket,
)

from tests.unit.media.native.harness import (
    ABS_ID,
    LEG_EXTENSIONS,
    LEG_PT,
    LEG_SSRC,
    LEVEL_ID,
    MEDIA_SSRC,
    MID_ID,
    PUB_LEVEL_ID,
    PUB_MID_ID,
    PUB_OTHER_ID,
    Net,
    assert_recent_abs_send_time,
    attach,
    extension_block,
    extension_map,
    rtp,
    wired,
)

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

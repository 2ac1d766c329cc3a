"""Retransmissions, payload types and SSRCs: what a track accepts and how it answers NACKs."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import (
    RtpPacket,
)

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    LEG_EXTENSIONS,
    LEG_PT,
    LEG_RTX_PT,
    LEG_RTX_SSRC,
    LEG_SSRC,
    MEDIA_SSRC,
    RTX_PT,
    RTX_SSRC,
    Net,
    extension_block,
    rtp,
    rtx,
    wired,
)

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

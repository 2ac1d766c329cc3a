"""RTCP from the peer (SRTCP, handled natively)."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
)
from hypothesis import given
from hypothesis import strategies as st
from pylibsrtp import Policy

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    LEG_EXTENSIONS,
    LEG_RTX_PT,
    LEG_RTX_SSRC,
    LEG_SSRC,
    MEDIA_SSRC,
    RTX_SSRC,
    Net,
    attach,
    fuzz,
    make_leg,
    make_track,
    notified,
    rtp,
    srtp_key,
    srtp_pointer,
    srtp_session,
    wired,
)

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

"""Bad input never crashes the native data plane (hypothesis)."""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpError

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    MEDIA_SSRC,
    PT,
    RTX_PT,
    SEQUENCE,
    Net,
    fuzz,
    make_leg,
    make_track,
    rtp,
    well_formed,
)

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


def test_nack_timing_rejects_a_time_that_is_not_a_number() -> None:
    track, _ = make_track(_fastpath.Counters(), nack=True)
    for seq in (1, 3):
        track.ingest(rtp(seq))
    for call in (track.nack_due, track.nack_wait):
        with pytest.raises(TypeError):
            call("soon")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            call(1.0, 2.0)  # type: ignore[call-arg]
    assert track.missing() == [2]  # nothing changed


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
    seq = next(SEQUENCE) & 0xFFFF  # libsrtp follows the wrap (rollover counter)
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
        "f.Track.__new__(f.Track).nack_due(); f.Track.__new__(f.Track).nack_wait()",
    ],
)
def test_objects_without_init_do_not_crash_the_process(code: str) -> None:
    program = (
        f"from fortrolig.media import _fastpath as f\ntry:\n    {code}\nexcept Exception:\n    pass"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")

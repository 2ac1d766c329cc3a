"""The native tap behind media/subscriber.py: every packet of a track to a Python subscriber."""

from __future__ import annotations

import pytest

from fortrolig.media import _fastpath
from fortrolig.media.subscriber import MediaPacket
from tests.unit.media.native.harness import (
    MEDIA_SSRC,
    PT,
    RTX_PT,
    RTX_SSRC,
    Net,
    make_track,
    notified,
    rtp,
    rtx,
    wired,
)


def test_a_track_without_a_tap_hands_nothing_to_python(net: Net) -> None:
    track, _, _ = wired(net)
    net.transport.route(MEDIA_SSRC, track)
    assert track.tapped is None
    net.send(rtp(1, payload=b"abc"))
    assert net.recv().payload == b"abc"


def test_the_tap_gets_the_publishers_header_and_payload_and_rtx_unwrapped(net: Net) -> None:
    track, _, _ = wired(net)
    got: list[bytes] = []
    track.set_tap(got.append)
    net.transport.route(MEDIA_SSRC, track)
    net.transport.route(RTX_SSRC, track)
    net.send(rtp(7, ts=1234, marker=True, payload=b"frame", extensions=[(1, b"v1")], padding=4))
    net.send(rtx(9, original_seq=5, payload=b"late"))
    packets = [MediaPacket.parse(d, 0.0) for d in got]
    assert [(p.ssrc, p.sequence_number, p.payload_type, p.payload) for p in packets] == [
        (MEDIA_SSRC, 7, PT, b"frame"),
        (MEDIA_SSRC, 5, PT, b"late"),
    ]
    assert (packets[0].timestamp, packets[0].marker, packets[1].marker) == (1234, True, False)
    assert RTX_PT != PT
    assert net.recv().payload == b"frame"  # the leg still forwards as before

    track.set_tap(None)
    net.send(rtp(8, payload=b"more"))
    assert len(got) == 2


def test_the_pump_queues_tapped_packets_for_dispatch(net: Net, pump: _fastpath.Pump) -> None:
    track, _ = make_track(net.counters)
    got: list[bytes] = []
    track.set_tap(got.append)
    net.transport.route(MEDIA_SSRC, track)
    pump.register(net.transport)
    net.send_raw(net.peer_tx.protect(rtp(1, payload=b"one")), pump=False)
    assert notified(pump)
    assert got == []  # Python runs only in dispatch()
    pump.dispatch()
    assert [MediaPacket.parse(d, 0.0).payload for d in got] == [b"one"]


def test_set_tap_refuses_junk_and_a_closed_track(net: Net) -> None:
    track, _ = make_track(net.counters)
    with pytest.raises(TypeError):
        track.set_tap(42)  # type: ignore[arg-type]
    track.close()
    with pytest.raises(RuntimeError):
        track.set_tap(lambda data: None)
    track.set_tap(None)

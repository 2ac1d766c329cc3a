"""Every parser the server runs on a browser's input, fuzzed from real Chromium traffic.

Seeds are the plaintext RTP and RTCP packets and the SDP captured from Chromium
(tests/fixtures/chromium/, tests/support/media_fuzz.py). Each example is a captured packet with a
few mutations; ``choices=[]`` is the captured packet itself, and every seed is also run
unchanged. What is checked:

* the native data plane (``Track.ingest``, SRTP through ``Transport.on_readable``,
  ``Transport.rtcp`` and SRTCP): never crashes; a packet whose header lies about its length is
  counted as malformed and never forwarded; what it does forward is well formed and carries
  exactly the input's CSRCs and payload; retransmissions answer only from the cache;
* the Python helpers on that path: the Python subscriber's ``MediaPacket.parse`` of what the
  native tap hands over, the datagram sorting step (``drop_kind``);
* the SDP handling of a browser's offer (``parse_sdp``, the extension ids the SFU keeps, and
  ``Peer.publish`` with aiortc's own parser): an answer or a typed error, never another
  exception.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from fortrolig.core.errors import FortroligError, ProtocolError
from fortrolig.media import _fastpath
from fortrolig.media import worker_schema as schema
from fortrolig.media.counters import MediaCounters
from fortrolig.media.datagrams import DROP_KINDS, drop_kind
from fortrolig.media.extmap import align_extmap_ids, extmap_ids
from fortrolig.media.peer import Peer, parse_sdp
from fortrolig.media.settings import MediaSettings
from fortrolig.media.subscriber import MediaPacket
from fortrolig.signaling import protocol
from tests.support import media_fuzz as mf

RTP = mf.seeds("rtp")
RTCP = mf.seeds("rtcp")
LEG_PT, LEG_RTX_PT = 100, 101
MID_ID, ABS_ID, LEVEL_ID = 3, 5, 9
MEDIA_SSRC = 0x01020304  # what a track of RTX seeds is told its media SSRC is
FRESH = itertools.count(1)  # SSRCs and sequence numbers never used before (replay windows)
choices = st.lists(st.integers(0, 0xFFFF), max_size=40)


# A longer hunt on a developer's machine: FUZZ_SCALE=50 runs 50 times as many examples (with
# pytest --timeout=0: the per-test timeout is sized for the default).
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))


def fuzz(examples: int) -> settings:
    """Bounded and quick: no example database in the repository, no deadline (a shared
    machine), one socket fixture for every example."""
    return settings(
        database=None,
        deadline=None,
        max_examples=examples * SCALE,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def picker(values: list[int]) -> mf.Pick:
    """``pick`` reading hypothesis's integers in turn (0 once they run out: a short list means
    few, small mutations, which is what hypothesis shrinks towards)."""
    it = iter(values)

    def pick(low: int, high: int) -> int:
        return low + next(it, 0) % (high - low + 1)

    return pick


def session(key: bytes, direction: int) -> Session:
    return Session(
        Policy(key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    )


@dataclass
class Net:
    """The SFU's native transport on a loopback socket, and the peer at the other end."""

    sfu: socket.socket
    peer: socket.socket
    transport: _fastpath.Transport
    counters: _fastpath.Counters
    peer_tx: Session
    peer_rx: Session
    fallback: list[bytes] = field(default_factory=list, repr=False)  # grows over the examples

    def received(self) -> list[bytes]:
        """Everything the SFU sent the peer since the last call, unprotected (which must work:
        the SFU protects what it sends with its own session)."""
        out = []
        self.peer.setblocking(False)
        while True:
            try:
                wire = self.peer.recv(4096)
            except BlockingIOError:
                return out
            out.append(self.peer_rx.unprotect(wire))

    def drain(self) -> None:
        """Forget what the SFU sent (without unprotecting it)."""
        self.peer.setblocking(False)
        while True:
            try:
                self.peer.recv(4096)
            except BlockingIOError:
                return

    def deliver(self, wire: bytes) -> None:
        self.peer.sendto(wire, self.sfu.getsockname())
        for _ in range(100):  # loopback: there at once, but not before sendto returned
            self.transport.on_readable()
            if not self._pending():
                return
        raise AssertionError("the SFU socket never drained")

    def _pending(self) -> bool:
        try:
            self.sfu.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return True


@pytest.fixture
def net() -> Iterator[Net]:
    sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport = None
    try:
        sfu.bind(("127.0.0.1", 0))
        peer.bind(("127.0.0.1", 0))
        sfu.setblocking(False)
        up, down = mf.srtp_key("captured publisher->sfu"), mf.srtp_key("captured sfu->peer")
        sfu_rx = session(up, Policy.SSRC_ANY_INBOUND)
        sfu_tx = session(down, Policy.SSRC_ANY_OUTBOUND)
        counters = _fastpath.Counters()
        seen: list[bytes] = []
        transport = _fastpath.Transport(
            sfu.fileno(),
            "127.0.0.1",
            peer.getsockname()[1],
            mf.srtp_pointer(sfu_rx),
            mf.srtp_pointer(sfu_tx),
            (sfu_rx, sfu_tx),
            lambda data, addr: seen.append(data),
            counters,
        )
        yield Net(
            sfu,
            peer,
            transport,
            counters,
            session(up, Policy.SSRC_ANY_OUTBOUND),
            session(down, Policy.SSRC_ANY_INBOUND),
            seen,
        )
    finally:
        if transport is not None:
            transport.close()
        sfu.close()
        peer.close()


# -- RTP ------------------------------------------------------------------------------------


@dataclass
class Wired:
    """A native track fed one seed's kind of packets, forwarding to one fresh leg."""

    track: _fastpath.Track
    leg: _fastpath.Leg
    rtx_input: bool  # the track takes the seed for a retransmission (RTX unwrap)
    tapped: list[bytes] = field(default_factory=list)


def wire_for(net: Net, seed: mf.Seed) -> Wired:
    video = seed.kind.startswith(("vp8", "rtx"))
    rtx_input = seed.kind.startswith("rtx")
    pt = (seed.pt - 1) % 128 if rtx_input else seed.pt
    track = _fastpath.Track(
        net.counters,
        keyframe_codec=_fastpath.KEYFRAME_VP8 if video else _fastpath.KEYFRAME_NONE,
        clock_rate=90_000 if video else 48_000,
        payload_type=pt,
        rtx_payload_type=(pt + 1) % 128 if video else -1,
        nack=video,
        on_keyframe=lambda: None,
        on_missing=lambda missing: None,
    )
    if rtx_input:
        track.set_options(media_ssrc=MEDIA_SSRC)
    track.set_options(audio_level_id=1)  # Chromium's ssrc-audio-level id in the seeds
    leg = _fastpath.Leg(
        net.counters, gated=False, seq_start=next(FRESH) & 0x7FFF, ts_delta=7, rtx_seq=1
    )
    n = next(FRESH)
    leg.attach(
        net.transport,
        ssrc=0x30000000 + n,
        rtx_ssrc=0x40000000 + n,
        payload_type=LEG_PT,
        rtx_payload_type=LEG_RTX_PT,
        mid=b"1",
        mid_id=MID_ID,
        abs_send_time_id=ABS_ID,
        audio_level_id=LEVEL_ID,
    )
    track.add_leg(leg)
    wired = Wired(track, leg, rtx_input)
    track.set_tap(wired.tapped.append)
    return wired


def check_forwarding(net: Net, w: Wired, plain: bytes, malformed_before: int) -> list[bytes]:
    """What the native track did with ``plain`` is right (see the module docstring); returns
    what it forwarded."""
    layout = mf.rtp_layout(plain)
    sent = net.received()
    if layout is None:
        assert net.counters.malformed == malformed_before + 1
        assert sent == [] and w.tapped == []
        return sent
    assert net.counters.malformed == malformed_before
    assert len(sent) <= 1
    skip = 2 if w.rtx_input else 0  # an RTX payload starts with the original sequence number
    for out in sent:
        got = mf.rtp_layout(out)
        assert got is not None, out.hex()
        assert out[1] & 0x7F == LEG_PT and struct.unpack_from("!I", out, 8)[0] == w.leg.ssrc
        assert got.csrcs == layout.csrcs
        assert out[got.header_end :] == plain[layout.header_end + skip :]
        assert bool(out[0] & 0x20) == bool(plain[0] & 0x20)
        check_retransmission(net, w, out, got)
    for tap in w.tapped:  # what the Python subscriber (the recorder) gets of it
        packet = MediaPacket.parse(tap, 0.0)
        assert packet.payload == plain[layout.header_end + skip : len(plain) - layout.padding]
    return sent


def check_retransmission(net: Net, w: Wired, out: bytes, got: mf.RtpLayout) -> None:
    """A NACK of the packet just forwarded is answered over RTX, padding dropped."""
    seq = struct.unpack_from("!H", out, 2)[0]
    assert w.leg.retransmit(seq)
    (rtx,) = net.received()
    layout = mf.rtp_layout(rtx)
    assert layout is not None and not rtx[0] & 0x20
    assert rtx[1] & 0x7F == LEG_RTX_PT
    assert rtx[layout.header_end :] == out[2:4] + out[got.header_end : len(out) - got.padding]


def seed_examples(test: Any) -> Any:
    """Every captured packet, unchanged, is an example of ``test``."""
    for i in range(len(RTP)):
        test = example(seed=i, values=[])(test)
    return test


@fuzz(1000)
@given(seed=st.integers(0, len(RTP) - 1), values=choices)
@seed_examples
def test_mutated_captured_rtp_into_the_native_track(net: Net, seed: int, values: list[int]) -> None:
    s = RTP[seed]
    plain = mf.mutate_rtp(s.data, picker(values))
    w = wire_for(net, s)
    try:
        before = net.counters.malformed
        w.track.ingest(plain)
        check_forwarding(net, w, plain, before)
        w.track.report()
        w.track.nack_due()
    finally:
        w.track.close()
        w.leg.close()


@fuzz(500)
@given(seed=st.integers(0, len(RTP) - 1), values=choices)
@seed_examples
def test_mutated_captured_rtp_as_srtp_through_the_socket(
    net: Net, seed: int, values: list[int]
) -> None:
    s = RTP[seed]
    plain = bytearray(mf.mutate_rtp(s.data, picker(values)))
    if len(plain) >= 4:
        struct.pack_into("!H", plain, 2, next(FRESH) & 0xFFFF)  # not a replay of the last one
    try:
        wire = net.peer_tx.protect(bytes(plain))
    except SrtpError:
        return  # libsrtp will not protect it (a header past the end): no peer can send it
    w = wire_for(net, s)
    ssrc = struct.unpack_from("!I", wire, 8)[0]
    assert net.transport.route(ssrc, w.track)
    try:
        failures, native = net.counters.srtp_failures, net.counters.native_datagrams
        before, calls = net.counters.malformed, len(net.fallback)
        net.deliver(wire)
        if not 128 <= wire[0] < 192:  # a mutated first byte: not SRTP, for the fallback
            assert net.fallback[calls:] == [wire]
        elif 192 <= wire[1] <= 223:  # a mutated second byte: read as SRTCP, fails to verify
            assert net.counters.srtp_failures == failures + 1
        elif net.counters.srtp_failures == failures + 1:  # libsrtp refused what it protected
            assert net.counters.native_datagrams == native
        else:
            assert net.counters.native_datagrams == native + 1
            check_forwarding(net, w, bytes(plain), before)
        assert net.received() == []  # nothing (more) went out
    finally:
        net.transport.unroute(w.track)
        w.track.close()
        w.leg.close()


def test_every_captured_packet_is_well_formed_and_forwarded_whole(net: Net) -> None:
    """The seeds themselves: real traffic is never counted as malformed."""
    assert {s.kind for s in RTP} >= {"vp8-key", "vp8-delta", "opus", "rtx"}
    keyframe = next(s for s in RTP if s.kind == "vp8-key")
    layout = mf.rtp_layout(keyframe.data)
    assert layout is not None
    assert _fastpath.is_keyframe_start(_fastpath.KEYFRAME_VP8, keyframe.data[layout.header_end :])
    for s in RTP:
        w = wire_for(net, s)
        w.track.ingest(s.data)
        sent = check_forwarding(net, w, s.data, net.counters.malformed)
        assert len(sent) == (0 if s.kind == "rtx-padding" else 1), s.name  # probes stay here
        w.track.close()
        w.leg.close()
    assert net.counters.malformed == 0


# -- RTCP -----------------------------------------------------------------------------------


def nacked(data: bytes) -> dict[int, int]:
    """The first sequence number each captured NACK asks of each SSRC."""
    out: dict[int, int] = {}
    for at in mf.rtcp_offsets(data):
        if data[at + 1] == 205 and data[at] & 0x1F == 1 and at + 16 <= len(data):
            ssrc, pid = struct.unpack_from("!I", data, at + 8)[0], data[at + 12 : at + 14]
            out.setdefault(ssrc, struct.unpack("!H", pid)[0])
    return out


SSRCS = sorted(set().union(*(mf.named_ssrcs(s.data) for s in RTCP)))
NACKED = {k: v for s in RTCP for k, v in nacked(s.data).items()}
CACHED = 24  # packets forwarded to each leg before the RTCP arrives


@dataclass
class Legs:
    """One leg per SSRC the captured RTCP names, with its cache filled around what the capture
    NACKed, and what each cached packet's payload was."""

    track: _fastpath.Track
    legs: list[_fastpath.Leg]
    rtx_ssrcs: dict[int, _fastpath.Leg]
    cached: dict[tuple[int, int], bytes]  # (leg ssrc, seq) -> payload


def legs_for(net: Net) -> Legs:
    track = _fastpath.Track(
        net.counters,
        keyframe_codec=_fastpath.KEYFRAME_NONE,
        clock_rate=90_000,
        payload_type=96,
        rtx_payload_type=97,
        nack=False,
        on_keyframe=lambda: None,
        on_missing=lambda missing: None,
    )
    legs, rtx = [], {}
    for ssrc in SSRCS:
        leg = _fastpath.Leg(
            net.counters,
            gated=False,
            seq_start=NACKED.get(ssrc, 0),
            ts_delta=0,
            rtx_seq=next(FRESH) & 0xFFFF,
        )
        rtx_ssrc = 0x50000000 + next(FRESH)
        leg.attach(net.transport, ssrc, rtx_ssrc, LEG_PT, LEG_RTX_PT, b"", 0, 0, 0, lambda: None)
        track.add_leg(leg)
        legs.append(leg)
        rtx[rtx_ssrc] = leg
    cached = {}
    base = next(FRESH) * CACHED
    for i in range(CACHED):
        payload = struct.pack("!II", base, i) * 3
        track.ingest(struct.pack("!BBHII", 0x80, 96, (base + i) & 0xFFFF, i, 0x0A0B0C0D) + payload)
        for leg in legs:
            cached[leg.ssrc, (NACKED.get(leg.ssrc, 0) + i) & 0xFFFF] = payload
    net.drain()  # the same SSRCs and sequence numbers every example: not unprotected
    return Legs(track, legs, rtx, cached)


def check_rtcp_effects(net: Net, legs: Legs) -> None:
    """Whatever the RTCP made the SFU send is a retransmission of a packet it had cached."""
    for out in net.received():
        layout = mf.rtp_layout(out)
        assert layout is not None
        assert out[1] & 0x7F == LEG_RTX_PT
        leg = legs.rtx_ssrcs[struct.unpack_from("!I", out, 8)[0]]
        seq = struct.unpack_from("!H", out, layout.header_end)[0]
        assert out[layout.header_end + 2 :] == legs.cached[leg.ssrc, seq]


def rtcp_examples(test: Any) -> Any:
    for i in range(len(RTCP)):
        test = example(seed=i, values=[])(test)
    return test


@fuzz(800)
@given(seed=st.integers(0, len(RTCP) - 1), values=choices)
@rtcp_examples
def test_mutated_captured_rtcp_into_the_native_transport(
    net: Net, seed: int, values: list[int]
) -> None:
    data = mf.mutate_rtcp(RTCP[seed].data, picker(values))
    legs = legs_for(net)
    try:
        received, malformed = net.counters.rtcp_received, net.counters.malformed
        net.transport.rtcp(data)
        assert net.counters.rtcp_received == received + 1
        assert net.counters.malformed == malformed + (0 if mf.rtcp_well_formed(data) else 1)
        check_rtcp_effects(net, legs)
    finally:
        for leg in legs.legs:
            leg.close()
        legs.track.close()


@fuzz(400)
@given(seed=st.integers(0, len(RTCP) - 1), values=choices)
@rtcp_examples
def test_mutated_captured_rtcp_as_srtcp_through_the_socket(
    net: Net, seed: int, values: list[int]
) -> None:
    data = mf.mutate_rtcp(RTCP[seed].data, picker(values))
    try:
        wire = net.peer_tx.protect_rtcp(data)
    except SrtpError:
        return  # shorter than an RTCP header: libsrtp will not protect it
    legs = legs_for(net)
    try:
        failures, malformed = net.counters.srtp_failures, net.counters.malformed
        native, calls = net.counters.native_datagrams, len(net.fallback)
        net.deliver(wire)
        if 128 <= wire[0] < 192 and 192 <= wire[1] <= 223:  # SRTCP: the data plane's
            assert net.counters.srtp_failures == failures
            assert net.counters.native_datagrams == native + 1
            well_formed = mf.rtcp_well_formed(data)
            assert net.counters.malformed == malformed + (0 if well_formed else 1)
            assert net.fallback[calls:] == []
        else:  # a mutated second byte makes it look like RTP (of no routed SSRC)
            assert net.fallback[calls:] == [wire]
        check_rtcp_effects(net, legs)
    finally:
        for leg in legs.legs:
            leg.close()
        legs.track.close()


def test_every_captured_rtcp_packet_is_well_formed_and_read(net: Net) -> None:
    kinds = {k for s in RTCP for k in s.info["packets"]}
    assert kinds >= {"sr", "rr", "sdes", "remb", "nack"}
    for s in RTCP:
        assert mf.rtcp_well_formed(s.data), s.name
        net.transport.rtcp(s.data)
    assert net.counters.malformed == 0
    assert net.counters.remb_received > 0 and net.counters.nack_received > 0


# -- datagrams at the media port ------------------------------------------------------------


@fuzz(600)
@given(rtp=st.booleans(), seed=st.integers(0, 10_000), values=choices)
def test_mutated_captured_datagrams_are_sorted_without_error(
    rtp: bool, seed: int, values: list[int]
) -> None:
    pool = RTP if rtp else RTCP
    mutate = mf.mutate_rtp if rtp else mf.mutate_rtcp
    data = mutate(pool[seed % len(pool)].data, picker(values))
    kind = drop_kind(data)
    assert kind is None or kind in DROP_KINDS
    if data and 128 <= data[0] < 192 and len(data) >= 12:
        assert kind is None  # what could be SRTP or SRTCP goes on to be authenticated


# -- SDP of a browser's offer ---------------------------------------------------------------


def sdp_examples(test: Any) -> Any:
    for name in ("offer", "answer"):
        test = example(name=name, values=[])(test)
    return test


@fuzz(600)
@given(name=st.sampled_from(["offer", "answer"]), values=choices)
@sdp_examples
def test_mutated_captured_sdp_gets_a_typed_error_or_is_parsed(name: str, values: list[int]) -> None:
    sdp = mf.mutate_sdp(mf.sdp(name), picker(values))
    try:
        parse_sdp(sdp, name)
    except FortroligError as exc:
        assert exc.code == "bad_sdp"
    ids = extmap_ids(sdp)
    assert all(1 <= i <= 255 for i in ids.values())
    aligned = align_extmap_ids(mf.sdp("offer"), ids)  # the SFU's next offer, with these ids
    assert all(1 <= i <= 255 for i in extmap_ids(aligned).values())


@fuzz(300)
@given(kind=st.sampled_from(["offer", "answer"]), values=choices)
def test_mutated_captured_sdp_crosses_the_wire_and_the_worker_channel_intact(
    kind: str, values: list[int]
) -> None:
    """The browser's SDP in its WebSocket message, then in the call to a media worker: parsed
    into the typed message or refused with a ProtocolError, and carried byte for byte."""
    sdp = mf.mutate_sdp(mf.sdp(kind), picker(values))
    try:
        msg = protocol.parse(json.dumps({"type": kind, "sdp": sdp}))
    except ProtocolError as exc:
        assert len(sdp) > protocol.SDP_MAX, exc
        return
    assert isinstance(msg, protocol.Offer | protocol.Answer) and msg.sdp == sdp
    request = (schema.Publish if kind == "offer" else schema.Answer)("room_1", "p_1", sdp)
    call = schema.parse_call(schema.dump(schema.Call(7, request)))
    assert call.request == request


class Events:
    def __init__(self) -> None:
        self.offered = asyncio.Event()

    async def send_offer(self, participant_id: str, sdp: str) -> None:
        self.offered.set()

    async def media_connected(self, participant_id: str) -> None: ...

    async def media_failed(self, participant_id: str, reason: str) -> None: ...


async def publish(sdp: str) -> str | FortroligError:
    """The SFU's answer to ``sdp`` as a publish offer, or the typed error it raised."""
    peer = Peer("p1", MediaSettings(), MediaCounters(), Events())
    try:
        return await peer.publish(sdp)
    except FortroligError as exc:
        return exc
    finally:
        await peer.close()


@fuzz(150)
@given(values=choices)
@example(values=[])
def test_mutated_captured_offer_into_a_peer(values: list[int]) -> None:
    """aiortc's own SDP parser and negotiation behind the SFU's checks: an answer or a typed
    error (``bad_sdp``), never another exception out of ``Peer.publish``."""
    sdp = mf.mutate_sdp(mf.sdp("offer"), picker(values))
    result = asyncio.run(publish(sdp))
    if isinstance(result, FortroligError):
        assert result.code == "bad_sdp", result
    else:
        assert result.startswith("v=0")
    if not values:
        assert isinstance(result, str) and "m=video" in result and "m=audio" in result


async def answer(sdp: str) -> str | FortroligError:
    """``sdp`` as the answer to the SFU's offer subscribing a publisher to another one's tracks:
    "ok" with the codecs it left the published tracks, or the typed error it raised.

    Both peers publish the captured offer; the captured answer is Chromium's answer to the
    offer the SFU made in that same situation (same mids, same renumbered payload types).
    """
    events, counters = Events(), MediaCounters()
    peer = Peer("a", MediaSettings(), counters, events)
    other = Peer("b", MediaSettings(), counters, Events())
    try:
        await peer.publish(mf.sdp("offer"))
        await other.publish(mf.sdp("offer"))
        for track in other.published:
            peer.subscribe(track)
        peer._connected.set()  # what ICE and DTLS would do: the SFU offers once connected
        await asyncio.wait_for(events.offered.wait(), 10)
        try:
            await peer.answer(sdp)
        except FortroligError as exc:
            return exc
        for track in peer.published:  # what renumbering left the native tracks with
            assert 0 <= track.codec.payload_type <= 127
            assert track.codec.rtx_payload_type is None or 0 <= track.codec.rtx_payload_type < 128
        return "ok"
    finally:
        await peer.close()
        await other.close()


@fuzz(60)
@given(values=choices)
@example(values=[])
def test_mutated_captured_answer_into_a_peer(values: list[int]) -> None:
    """The answer path: aiortc's parser, then the SFU's codec refresh (payload types renumbered
    by the SFU's offer) on what the browser answered."""
    sdp = mf.mutate_sdp(mf.sdp("answer"), picker(values))
    result = asyncio.run(answer(sdp))
    if isinstance(result, FortroligError):
        assert result.code == "bad_sdp", result
    if not values:
        assert result == "ok"


def test_an_offer_with_a_huge_extension_id_is_refused_cleanly() -> None:
    """Found by the SDP fuzzer: a session-level ``a=extmap`` with a 5,000-digit id passed aiortc's
    parser (which reads only media-level extmaps) and made ``int()`` raise ValueError in the
    SFU's extension-id bookkeeping, an unhandled exception out of ``Peer.publish``."""
    sdp = mf.sdp("offer").replace("a=extmap-allow-mixed", "a=extmap:" + "1" * 5000 + " urn:x")
    assert extmap_ids(sdp) == extmap_ids(mf.sdp("offer"))
    result = asyncio.run(publish(sdp))
    assert isinstance(result, str | FortroligError)


def test_an_offer_repeating_a_mid_is_refused_cleanly() -> None:
    """Found by the SDP fuzzer: Chromium's offer with its audio section repeated (same mid)
    passed the SFU's checks and aiortc's parser, then raised AttributeError inside aiortc's
    setLocalDescription (no transceiver for the third m-line): an unhandled exception."""
    offer = mf.sdp("offer")
    audio = offer[offer.index("m=audio") : offer.index("m=video")]
    result = asyncio.run(publish(offer + audio))
    assert isinstance(result, FortroligError) and result.code == "bad_sdp", result


def test_a_peer_closed_right_after_publish_leaves_no_coroutine_unawaited() -> None:
    """Found by the SDP fuzzer (warnings are errors here): a peer closed before its connect
    watchdog task first ran left that coroutine never awaited (a RuntimeWarning each time)."""
    assert isinstance(asyncio.run(publish(mf.sdp("offer"))), str)


def test_compound_rtcp_whose_lengths_do_not_add_up_counts_as_malformed(net: Net) -> None:
    """The native RTCP reader used to stop silently at a lying length word or a bad header;
    now the compound counts as malformed, and the packets before it are still read."""
    rr_nack = next(s.data for s in RTCP if s.info["packets"] == ["rr", "nack"])
    sr = next(s.data for s in RTCP if s.info["packets"][0] == "sr")
    cases = [  # (compound, NACKs read from it)
        (rr_nack[:-1], 0),  # the NACK cut short
        (rr_nack + b"\x80\xc9\x00", 1),  # a whole NACK, then three stray bytes
        (sr + b"\x00" * 8, 0),  # a version-0 header after the SR
        (b"", 0),
        (b"\x81\xc9", 0),
    ]
    for bad, read in cases:
        before, nacks = net.counters.malformed, net.counters.nack_received
        net.transport.rtcp(bad)
        assert net.counters.malformed == before + 1, bad.hex()
        assert net.counters.nack_received == nacks + read
    before, nacks = net.counters.malformed, net.counters.nack_received
    net.transport.rtcp(rr_nack + rr_nack)  # a chain of good packets is fine
    assert (net.counters.malformed, net.counters.nack_received) == (before, nacks + 2)


def test_an_offer_bundling_a_missing_mid_is_refused_and_the_peer_still_closes() -> None:
    """Found by the SDP fuzzer: Chromium's offer without its ``m=audio`` line still bundles
    mid 0, which no section has. aiortc then left the video transceiver without a transport:
    ``Peer.publish`` raised AttributeError, and so did ``Peer.close`` afterwards."""
    lines = mf.sdp("offer").split("\r\n")
    lines.remove(next(line for line in lines if line.startswith("m=audio")))
    result = asyncio.run(publish("\r\n".join(lines)))  # publish() closes the peer, too
    assert isinstance(result, FortroligError) and result.code == "bad_sdp", result


def test_a_peer_connection_aiortc_cannot_close_still_lets_the_peer_close() -> None:
    """Whatever a description left aiortc with, ``Peer.close`` ends without raising (counted
    as a handler error): it runs on every leave, and must release the rest."""
    lines = mf.sdp("offer").split("\r\n")
    lines.remove(next(line for line in lines if line.startswith("m=audio")))

    async def run() -> MediaCounters:
        counters = MediaCounters()
        peer = Peer("p1", MediaSettings(), counters, Events())
        # past the SFU's checks, straight into aiortc: the state the fuzzer found
        await peer.pc.setRemoteDescription(RTCSessionDescription("\r\n".join(lines), "offer"))
        await peer.close()
        await peer.close()  # idempotent
        return counters

    assert asyncio.run(run()).handler_errors == 1


def test_an_offer_without_a_direction_is_refused_cleanly() -> None:
    """Found by the SDP fuzzer: without ``a=sendonly`` aiortc took the direction for None and
    raised ValueError in createAnswer, out of ``Peer.publish``."""
    offer = mf.sdp("offer").replace("a=sendonly\r\n", "", 1)
    result = asyncio.run(publish(offer))
    assert isinstance(result, FortroligError) and result.code == "bad_sdp", result


def test_an_offer_with_a_media_section_of_an_unknown_kind_is_refused_cleanly() -> None:
    """Found by the SDP fuzzer: ``m=9audio`` is skipped by aiortc, but the BUNDLE group still
    names its mid first, which left every transceiver without a transport (AttributeError)."""
    offer = mf.sdp("offer").replace("m=audio", "m=9audio", 1)
    result = asyncio.run(publish(offer))
    assert isinstance(result, FortroligError) and result.code == "bad_sdp", result

"""Every touch of aiortc's and aioice's private attributes lives in this module.

aiortc has no public API for forwarding RTP without decoding (aiortc issues #449, #55, #627), so
the SFU replaces a few methods *per instance* on the receivers and senders it owns, reads a few
private fields (negotiated codecs, SSRCs) and takes over the nominated socket of a connected DTLS
transport for the native data plane; the load tester's receivers skip aiortc's decoding the same
way (at the end of this module). The versions are pinned (aiortc==1.16.0, aioice==0.13.0):
`tests/unit/media/test_aiortc_pins.py` fails loudly if an upgrade moves any private name used
here, and `tests/unit/media/test_aiortc_private_access.py` fails if one is used anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aioice.ice
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    rtcdtlstransport,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
    unwrap_rtx,
)
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from fortrolig.core.log_limit import RateLimitedLog

from . import _fastpath
from .datagrams import drop_kind

log = logging.getLogger(__name__)

AES_256_GCM = "SRTP_AEAD_AES_256_GCM"

_TAG = "_fortrolig_track"  # our attribute on a receiver: the SFU's track it feeds

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
DropCounter = Callable[[str], None]
"""Counts one datagram dropped at a media port, by kind (``datagrams.DROP_KINDS``)."""
_GUARDED = "_fortrolig_guarded"  # our attribute on an aioice protocol: its reads are sorted


def _ignore_drop(kind: str) -> None:
    """The default :data:`DropCounter`: drop without counting."""


def guard_ice_sockets(pc: RTCPeerConnection, on_drop: DropCounter) -> None:
    """Drop malformed datagrams before aioice and aiortc see them (idempotent).

    Until the native data plane takes a socket over, aioice reads it and hands whatever is not
    STUN to aiortc's DTLS transport, from any source address; a 0-byte datagram there raises
    IndexError in aiortc's receive loop and ends the peer's DTLS transport. Every local
    protocol of the peer's ICE connections (after gathering) gets a sorting step in front.
    """
    for dtls in dtls_transports(pc):
        for protocol in dtls.transport._connection._protocols:
            if getattr(protocol, _GUARDED, False):
                continue
            inner = protocol.datagram_received

            def guarded(data: bytes | str, addr: tuple[Any, ...], inner: Any = inner) -> None:
                kind = drop_kind(data if isinstance(data, bytes) else b"")
                if kind is not None:
                    on_drop(kind)
                    return
                inner(data, addr)

            protocol.datagram_received = guarded  # type: ignore[method-assign]
            setattr(protocol, _GUARDED, True)


RtcpHandler = Callable[[AnyRtcpPacket], Awaitable[None]]


class CodecGuard:
    """Counts (and refuses) any decoder or encoder creation in this process.

    The SFU never transcodes; if a code path ever reached aiortc's codec factories the counter
    shows it on ``/metrics`` and the creation fails instead of silently burning CPU.
    """

    def __init__(self) -> None:
        self.decoders = 0
        self.encoders = 0
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return

        def no_decoder(codec: Any) -> Any:
            self.decoders += 1
            raise RuntimeError(f"SFU must not decode ({codec.mimeType})")

        def no_encoder(codec: Any) -> Any:
            self.encoders += 1
            raise RuntimeError(f"SFU must not encode ({codec.mimeType})")

        setattr(rtcrtpreceiver, "get_decoder", no_decoder)  # noqa: B010
        setattr(rtcrtpsender, "get_encoder", no_encoder)  # noqa: B010
        self._installed = True


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer only ``addresses`` as ICE host candidates, process-wide.

    aioice skips 127.0.0.1 and offers every other interface's address; a deployment (and every
    test here) must choose exactly which addresses are announced.
    """
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def enforce_aes256_srtp(pc: RTCPeerConnection) -> None:
    """Offer only AEAD_AES_256_GCM on every DTLS transport of ``pc`` that has not started.

    A peer that cannot do AES-256-GCM then fails the DTLS handshake (fail closed). Must be
    called after each set*Description, before the event loop runs the connect task.
    """
    only = [rtcdtlstransport.SRTP_AEAD_AES_256_GCM]
    for dtls in dtls_transports(pc):
        if dtls.state == "new":
            dtls._srtp_profiles = only


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of ``pc`` (one with bundle)."""
    seen: dict[int, RTCDtlsTransport] = {}
    for t in pc.getTransceivers():
        seen.setdefault(id(t.receiver.transport), t.receiver.transport)
    sctp = pc.sctp
    if sctp is not None:
        seen.setdefault(id(sctp.transport), sctp.transport)
    return list(seen.values())


def selected_srtp_profile(dtls: RTCDtlsTransport) -> str | None:
    """The SRTP protection profile the DTLS handshake selected, e.g. SRTP_AEAD_AES_256_GCM."""
    if dtls.state != "connected":
        return None
    ssl = dtls._ssl
    if ssl is None:
        return None
    profile = ssl.get_selected_srtp_profile()
    return profile.decode() if isinstance(profile, bytes) else str(profile)


class RawSender:
    """Protects and sends a serialized RTCP packet on a DTLS transport.

    Skips aiortc's coroutine chain (dtls._send_rtp → ice._send → aioice send → protocol) and
    calls SRTCP protect and the socket's ``sendto`` directly. RTP never goes this way: the
    native data plane (``take_over_socket``) sends it.
    """

    __slots__ = ("_dtls",)

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls

    @property
    def connected(self) -> bool:
        return self._dtls._state == rtcdtlstransport.State.CONNECTED

    def send_rtcp(self, data: bytes) -> int:
        """Send one (compound) RTCP packet; returns bytes on the wire (0 when not connected)."""
        dtls = self._dtls
        if dtls._state != rtcdtlstransport.State.CONNECTED:
            return 0
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return 0
        wire = dtls._tx_srtp.protect_rtcp(data)
        pair.protocol.transport.sendto(wire, pair.remote_addr)
        return len(wire)


def hook_receiver(
    receiver: RTCRtpReceiver,
    on_rtp: RtpHandler,
    on_rtcp: RtcpHandler,
    on_started: Callable[[RTCRtpReceiveParameters], None],
) -> None:
    """Route a publisher's RTP to ``on_rtp`` instead of aiortc's jitter buffer and decoder.

    aiortc's own RTCP loop for this receiver stays idle (it only reports streams it saw), the
    decoder thread is stopped right after it starts, and RTCP from the publisher (SR, BYE) goes
    to ``on_rtcp``.
    """
    original_receive = receiver.receive

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        first = not receiver._RTCRtpReceiver__started  # type: ignore[attr-defined]
        await original_receive(parameters)
        if first:
            # No frame ever reaches the decoder queue; end the idle thread now.
            receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]
            on_started(parameters)

    receiver.receive = receive  # type: ignore[method-assign]
    receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign,assignment]
    receiver._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign,assignment]


def receiver_rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    """The SSRC the receiver uses as sender of its RTCP (its transceiver's sender SSRC)."""
    value = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    return int(value) if value is not None else None


def hook_sender(
    sender: RTCRtpSender,
    on_rtcp: RtcpHandler,
    on_started: Callable[[RTCRtpSendParameters], None],
    rtcp_loop: Callable[[], Awaitable[None]],
) -> None:
    """Turn an aiortc sender into a shell for a forwarding leg.

    Its RTP loop never pulls from a track (a sender without a track would poll every 20 ms),
    its RTCP loop is ``rtcp_loop`` (per-leg sender reports instead of aiortc's counters, which
    know nothing of forwarded packets), and RTCP from the subscriber goes to ``on_rtcp``.
    ``RTCRtpSender.stop()`` keeps working because the start/exit events are honoured.
    """
    original_send = sender.send

    async def run_rtp(codec: Any) -> None:
        sender._RTCRtpSender__rtp_started.set()  # type: ignore[attr-defined]
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            sender._RTCRtpSender__rtp_exited.set()  # type: ignore[attr-defined]

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        try:
            await rtcp_loop()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("leg RTCP loop failed")
        finally:
            sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    async def send(parameters: RTCRtpSendParameters) -> None:
        first = not sender._RTCRtpSender__started  # type: ignore[attr-defined]
        await original_send(parameters)
        if first:
            on_started(parameters)

    sender._run_rtp = run_rtp  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]
    sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign,assignment]
    sender.send = send  # type: ignore[method-assign]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRCs ``sender`` uses for media and for RTX (aiortc draws them at creation)."""
    return int(sender._ssrc), int(sender._rtx_ssrc)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs the last negotiation settled on for ``transceiver`` (with their RTX)."""
    return list(transceiver._codecs)


def tag_receiver(receiver: RTCRtpReceiver, tag: object) -> None:
    """Remember ``tag`` (the SFU's track) on ``receiver``: the data plane's slow path finds the
    track of a new SSRC through the receiver aiortc's router chooses."""
    setattr(receiver, _TAG, tag)


def receiver_tag(receiver: object) -> object | None:
    """What :func:`tag_receiver` remembered on ``receiver`` (None: not one of ours)."""
    return getattr(receiver, _TAG, None)


def set_sender_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Name the MediaStream and track the subscriber sees (``a=msid``) for this sender.

    aiortc uses one stream id per peer connection; a subscriber needs one stream per remote
    participant to group that participant's audio and video.
    """
    sender._stream_id = stream_id
    sender._track_id = track_id


def set_receiver_payload_types(receiver: RTCRtpReceiver, payload_types: Sequence[int]) -> None:
    """Route RTP with ``payload_types`` to ``receiver`` (after a renegotiation renumbered them).

    aiortc registers a receiver's payload types with the transport's RTP router only when the
    receiver starts; packets whose SSRC is known but whose payload type is not registered for
    that receiver are dropped.
    """
    transport = receiver.transport
    router = getattr(transport, "_rtp_router", None)
    if router is None:
        return
    for receivers in router.payload_type_table.values():
        receivers.discard(receiver)
    for pt in payload_types:
        router.payload_type_table.setdefault(pt, set()).add(receiver)


def srtp_pointer(session: Any) -> int:
    """The ``srtp_t`` inside a pylibsrtp Session (kept alive by the caller's reference): the
    data plane and the native load participant protect with aiortc's own sessions."""
    return int(srtp_ffi.cast("uintptr_t", session._srtp[0]))


# Bind the native data plane to the libsrtp that pylibsrtp loaded (its symbols are exported),
# so both use the same SRTP sessions: one key schedule and one replay window per direction.
_fastpath.init(
    *(
        int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, name)))
        for name in ("srtp_protect", "srtp_unprotect", "srtp_unprotect_rtcp")
    )
)

TrackOf = Callable[[object], "_fastpath.Track | None"]
_NATIVE = "_fortrolig_native"  # our attribute on a DTLS transport: its native data plane


class LockedSrtp:
    """A pylibsrtp Session used under the data-plane lock.

    The native data plane (possibly on its pump thread) uses the same libsrtp sessions; Python's
    own uses (the RTCP it sends, an RTP or RTCP packet that reaches aiortc's path) go through
    this wrapper so that the two never run at once.
    """

    __slots__ = ("session",)

    def __init__(self, session: Any) -> None:
        self.session = session

    def protect(self, data: bytes) -> bytes:
        return _fastpath.locked_call(self.session.protect, data)

    def unprotect(self, data: bytes) -> bytes:
        return _fastpath.locked_call(self.session.unprotect, data)

    def protect_rtcp(self, data: bytes) -> bytes:
        return _fastpath.locked_call(self.session.protect_rtcp, data)

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return _fastpath.locked_call(self.session.unprotect_rtcp, data)


@dataclass(frozen=True)
class NominatedSocket:
    """What taking over a connected DTLS transport's socket needs, read from aiortc and aioice.

    Found by :func:`nominated_socket`; nothing is changed until :func:`take_over_socket`.
    """

    dtls: RTCDtlsTransport
    protocol: aioice.ice.StunProtocol
    remote: tuple[Any, ...]
    rx: Any  # pylibsrtp Sessions: receive and transmit
    tx: Any


def native_transport_of(dtls: RTCDtlsTransport) -> _fastpath.Transport | None:
    """The native data plane already reading ``dtls``'s socket, if any (a pure getter)."""
    return cast("_fastpath.Transport | None", getattr(dtls, _NATIVE, None))


def nominated_socket(dtls: RTCDtlsTransport) -> NominatedSocket | None:
    """Inspect ``dtls``: the socket to take over, or None when it cannot be (yet).

    None while the transport is not connected, when it negotiated anything but AES-256-GCM
    (fail closed: no media on a weaker profile, which is never offered), when its nominated pair
    is relayed (logged: the SFU itself never uses TURN, so that is a configuration error), or
    when a previous native transport of it was closed (its sessions are already wrapped).
    """
    if dtls._state != rtcdtlstransport.State.CONNECTED or dtls._rx_srtp is None:
        return None
    if selected_srtp_profile(dtls) != AES_256_GCM:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return None
    protocol = pair.protocol
    if not isinstance(protocol, aioice.ice.StunProtocol):
        log.error("no native data plane for a %s pair", type(protocol).__name__)
        return None
    rx, tx = dtls._rx_srtp, dtls._tx_srtp
    if isinstance(rx, LockedSrtp) or isinstance(tx, LockedSrtp):
        return None
    return NominatedSocket(dtls, protocol, tuple(pair.remote_addr), rx, tx)


def take_over_socket(
    dtls: RTCDtlsTransport,
    counters: _fastpath.Counters,
    track_of: TrackOf,
    pump: _fastpath.Pump | None = None,
    on_drop: DropCounter = _ignore_drop,
) -> _fastpath.Transport | None:
    """Make the native data plane read ``dtls``'s socket (once; later calls return it).

    The event loop's reader of the nominated pair's socket is replaced by the native
    ``on_readable``: SRTP packets of SSRCs already routed are forwarded, and SRTCP is handled,
    without Python; everything else goes to :class:`_Fallback`. Returns None when
    :func:`nominated_socket` finds nothing to take over, or (logged) when the C side refuses
    the socket.
    """
    existing = native_transport_of(dtls)
    if existing is not None:
        return existing
    found = nominated_socket(dtls)
    if found is None:
        return None
    locked_rx = LockedSrtp(found.rx)
    fallback = _Fallback(found, locked_rx, counters, track_of, on_drop)
    native = _native_transport(found, fallback, counters)
    if native is None:
        return None
    fallback.native = native
    _hand_socket_over(found, native, locked_rx, pump)
    return native


def _native_transport(
    found: NominatedSocket, fallback: _Fallback, counters: _fastpath.Counters
) -> _fastpath.Transport | None:
    sock = found.protocol.transport.get_extra_info("socket")
    try:
        return _fastpath.Transport(
            sock.fileno(),
            found.remote[0],
            found.remote[1],
            srtp_pointer(found.rx),
            srtp_pointer(found.tx),
            (found.rx, found.tx),
            fallback,
            counters,
        )
    except (ValueError, OSError):  # e.g. a scoped IPv6 address the C side cannot parse
        log.exception("no native data plane for remote %s", found.remote)
        return None


def _hand_socket_over(
    found: NominatedSocket,
    native: _fastpath.Transport,
    locked_rx: LockedSrtp,
    pump: _fastpath.Pump | None,
) -> None:
    dtls = found.dtls
    # From now on Python's own SRTP calls take the data-plane lock (see LockedSrtp).
    dtls._rx_srtp, dtls._tx_srtp = locked_rx, LockedSrtp(found.tx)  # type: ignore[assignment]
    # asyncio's transport stops reading (it still sends for aioice and RTCP); the native
    # object reads through its own descriptor of the same socket, on the pump thread or from
    # the event loop.
    pause_datagram_reading(
        found.protocol.transport, found.protocol.transport.get_extra_info("socket").fileno()
    )
    if pump is not None:
        pump.register(native)
    else:
        asyncio.get_running_loop().add_reader(native.fd, native.on_readable)
    setattr(dtls, _NATIVE, native)


class _Fallback:
    """What the native transport hands back: STUN, DTLS, RTCP for aiortc, and new SSRCs.

    The first RTP packet of each SSRC is unprotected and routed here (aiortc's router decides
    which receiver it belongs to), then its SSRC is routed natively. STUN and DTLS go to aioice
    and aiortc exactly as before.
    """

    def __init__(
        self,
        found: NominatedSocket,
        locked_rx: LockedSrtp,
        counters: _fastpath.Counters,
        track_of: TrackOf,
        on_drop: DropCounter,
    ) -> None:
        self.native: _fastpath.Transport | None = None  # set once the transport exists
        self._on_drop = on_drop
        self._log = RateLimitedLog(log)
        self._protocol = found.protocol
        self._component = found.protocol.local_candidate.component
        self._router = found.dtls._rtp_router
        self._extensions = found.dtls._rtp_header_extensions_map
        self._rx = locked_rx
        self._counters = counters
        self._track_of = track_of

    def __call__(self, data: bytes, addr: tuple[Any, ...]) -> None:
        kind = drop_kind(data)
        if kind is not None:  # quietly: anyone can send these, so no log line per datagram
            self._on_drop(kind)
            return
        try:
            if 127 < data[0] < 192:  # RTP or RTCP: never STUN, skip aioice's parse attempt
                if is_rtcp(data):
                    self._protocol.receiver.data_received(data, self._component)
                else:
                    self._first_rtp(data)
            else:
                self._protocol.datagram_received(data, addr)
        except Exception as exc:
            self._on_drop("garbage")
            self._log.warning("dropping a datagram after an error: %r", exc)

    def _first_rtp(self, data: bytes) -> None:
        try:
            plain = self._rx.unprotect(data)
            packet = RtpPacket.parse(plain, self._extensions)
        except Exception:  # SRTP authentication failure or a malformed header: drop
            self._counters.increment("srtp_failures")
            return
        receiver = self._router.route_rtp(packet) or self._rtx_receiver(packet.ssrc)
        track = self._track_of(receiver) if receiver is not None else None
        if track is None or self.native is None:
            return  # no forwarding receiver for this SSRC: nothing else would use it
        self.native.route(packet.ssrc, track)
        track.ingest(plain)

    def _rtx_receiver(self, ssrc: int) -> Any:
        """The receiver whose retransmissions come on ``ssrc`` (the offer's FID group).

        aiortc's router knows each receiver's media SSRC only, and routes any other SSRC by
        payload type alone; the camera's and the screen's m-lines share their RTX payload type,
        so without this a publisher's retransmissions were dropped unrouted, and every packet
        lost on its uplink stayed lost for all its subscribers (frozen video at 5 % loss)."""
        for receiver in self._router.receivers:
            if ssrc in getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}):
                self._router.ssrc_table[ssrc] = receiver
                return receiver
        return None


def pause_datagram_reading(transport: Any, fd: int) -> None:
    """Stop asyncio's reads of a UDP socket whose datagrams the native object now reads.

    CPython 3.11.7 gives selector datagram transports ``pause_reading``; 3.11.2 (Debian
    bookworm's python3, the container image's) inherits ``ReadTransport``'s, which raises
    NotImplementedError. There the loop's reader on the socket is removed instead, which is
    all the newer method does; the transport adds no reader again after its start. (The
    public ``remove_reader`` refuses a descriptor a transport owns, hence the private one.)
    """
    try:
        transport.pause_reading()
    except NotImplementedError:
        asyncio.get_running_loop()._remove_reader(fd)  # type: ignore[attr-defined]


def close_native_transport(dtls: RTCDtlsTransport) -> None:
    """Stop reading the socket natively and release it; idempotent."""
    native = native_transport_of(dtls)
    if native is None or native.closed:
        return
    with contextlib.suppress(RuntimeError):  # the loop may already be closed at shutdown
        asyncio.get_running_loop().remove_reader(native.fd)  # no-op when a pump reads it
    native.close()  # also leaves the pump


def extension_ids(extensions: HeaderExtensionsMap) -> dict[str, int]:
    """The negotiated ids (0 = not negotiated) of the extensions the SFU writes or reads."""
    ids = extensions._HeaderExtensionsMap__ids  # type: ignore[attr-defined]
    return {
        "mid": int(ids.mid or 0),
        "abs_send_time": int(ids.abs_send_time or 0),
        "audio_level": int(ids.audio_level or 0),
    }


def receive_extensions(dtls: RTCDtlsTransport) -> HeaderExtensionsMap:
    """The map the transport parses incoming RTP with (to re-serialize a parsed packet)."""
    return dtls._rtp_header_extensions_map


# -- the load tester's receivers and senders (fortrolig-load is a client, not the SFU) ---------


def receiver_rtp_handler(receiver: RTCRtpReceiver) -> RtpHandler:
    """What ``receiver`` does with each RTP packet after SRTP and parsing (aiortc's own path)."""
    handler: RtpHandler = receiver._handle_rtp_packet
    return handler


def set_receiver_rtp_handler(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    """Make ``handler`` receive each RTP packet of ``receiver`` instead (see above)."""
    receiver._handle_rtp_packet = handler  # type: ignore[method-assign,assignment]


def set_receiver_jitter_buffer(receiver: RTCRtpReceiver, buffer: object) -> None:
    """Replace ``receiver``'s jitter buffer (one that never completes a frame idles the decoder)."""
    setattr(receiver, "_RTCRtpReceiver__jitter_buffer", buffer)  # noqa: B010


def on_keyframe_request(sender: RTCRtpSender, first: Callable[[], None]) -> None:
    """Call ``first`` whenever a PLI or FIR makes ``sender`` force a keyframe, then aiortc's own."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        first()
        original()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def feedback_only_rtp_handler(receiver: RTCRtpReceiver) -> RtpHandler:
    """aiortc's ``_handle_rtp_packet`` without depayloading, jitter buffer and decoding.

    For the load tester's synthetic participants (``fortrolig.loadtests.probe``): they keep the
    feedback a browser gives (receiver-report statistics, NACK, REMB) at a fraction of the CPU.
    """
    r: Any = receiver

    async def feedback(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not r._enabled:
            return
        estimator = r._RTCRtpReceiver__remote_bitrate_estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = r._RTCRtpReceiver__rtcp_ssrc
            if rtcp_ssrc is not None and remb is not None:
                await r._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        codecs = r._RTCRtpReceiver__codecs
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = r._RTCRtpReceiver__remote_streams
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)  # receiver reports (loss, jitter) for the SFU
        if is_rtx(codec):
            original_ssrc = r._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        nack = r._RTCRtpReceiver__nack_generator
        if nack is not None and nack.add(packet):
            await r._send_rtcp_nack(packet.ssrc, sorted(nack.missing))

    return feedback

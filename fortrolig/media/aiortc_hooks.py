"""Every touch of aiortc's and aioice's private attributes lives in this module.

aiortc has no public API for forwarding RTP without decoding (aiortc issues #449, #55, #627), so
the SFU replaces a few methods *per instance* on the receivers and senders it owns. The versions
are pinned (aiortc==1.16.0, aioice==0.13.0) and `tests/unit/media/test_aiortc_hooks.py` fails
loudly if an upgrade moves any attribute used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aioice.ice
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    rtcdtlstransport,
    rtcrtpreceiver,
    rtcrtpsender,
)
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtp import AnyRtcpPacket, HeaderExtensionsMap, RtpPacket, is_rtcp
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from . import _fastpath

log = logging.getLogger(__name__)

AES_256_GCM = "SRTP_AEAD_AES_256_GCM"

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
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
    native data plane (``native_transport``) sends it.
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
    prefix = "_RTCRtpSender__"

    async def run_rtp(codec: Any) -> None:
        getattr(sender, prefix + "rtp_started").set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
        finally:
            getattr(sender, prefix + "rtp_exited").set()

    async def run_rtcp() -> None:
        getattr(sender, prefix + "rtcp_started").set()
        try:
            await rtcp_loop()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("leg RTCP loop failed")
        finally:
            getattr(sender, prefix + "rtcp_exited").set()

    async def send(parameters: RTCRtpSendParameters) -> None:
        first = not getattr(sender, prefix + "started")
        await original_send(parameters)
        if first:
            on_started(parameters)

    sender._run_rtp = run_rtp  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]
    sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign,assignment]
    sender.send = send  # type: ignore[method-assign]


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


def _srtp_pointer(session: Any) -> int:
    """The ``srtp_t`` inside a pylibsrtp Session (kept alive by the caller's reference)."""
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


def native_transport(
    dtls: RTCDtlsTransport,
    counters: _fastpath.Counters,
    track_of: TrackOf,
    pump: _fastpath.Pump | None = None,
) -> _fastpath.Transport | None:
    """The native data plane of a connected DTLS transport, created on first use.

    The event loop's reader of the nominated pair's socket is replaced by the native
    ``on_readable``: SRTP packets of SSRCs already routed are forwarded, and SRTCP is handled,
    without Python; the first packet of each SSRC is unprotected and routed here (aiortc's
    router decides which receiver it belongs to), then its SSRC is routed natively. STUN and DTLS
    go to aioice and aiortc exactly as before. Returns None while the transport is not connected
    yet (or, logged, when its socket cannot be taken over).
    """
    existing = getattr(dtls, "_fortrolig_native", None)
    if existing is not None:
        return cast(_fastpath.Transport, existing)
    if dtls._state != rtcdtlstransport.State.CONNECTED or dtls._rx_srtp is None:
        return None
    if selected_srtp_profile(dtls) != AES_256_GCM:
        return None  # fail closed: no media on a weaker profile (it is never offered)
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if pair is None or pair.protocol.transport is None:
        return None
    protocol = pair.protocol
    if not isinstance(protocol, aioice.ice.StunProtocol):
        # A relayed (TURN) local candidate wraps every datagram; the SFU itself never uses
        # one (its ICE servers are for the clients), so this is a configuration error.
        log.error("no native data plane for a %s pair", type(protocol).__name__)
        return None
    sock = protocol.transport.get_extra_info("socket")
    rx, tx = dtls._rx_srtp, dtls._tx_srtp
    if isinstance(rx, LockedSrtp) or isinstance(tx, LockedSrtp):
        return None  # a previous native transport of this DTLS transport was closed
    locked_rx = LockedSrtp(rx)
    router, ext = dtls._rtp_router, dtls._rtp_header_extensions_map
    component = protocol.local_candidate.component
    native: _fastpath.Transport

    def slow_rtp(data: bytes) -> None:
        try:
            plain = locked_rx.unprotect(data)
            packet = RtpPacket.parse(plain, ext)
        except Exception:  # SRTP authentication failure or a malformed header: drop
            counters.increment("srtp_failures")
            return
        receiver = router.route_rtp(packet)
        track = track_of(receiver) if receiver is not None else None
        if track is None:
            return  # no forwarding receiver for this SSRC: nothing else would use it
        native.route(packet.ssrc, track)
        track.ingest(plain)

    def fallback(data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            if 127 < data[0] < 192:  # RTP or RTCP: never STUN, skip aioice's parse attempt
                if is_rtcp(data):
                    protocol.receiver.data_received(data, component)
                else:
                    slow_rtp(data)
            else:
                protocol.datagram_received(data, addr)
        except Exception:
            log.exception("dropping a datagram after an error")

    remote = pair.remote_addr
    try:
        native = _fastpath.Transport(
            sock.fileno(),
            remote[0],
            remote[1],
            _srtp_pointer(rx),
            _srtp_pointer(tx),
            (rx, tx),
            fallback,
            counters,
        )
    except (ValueError, OSError):  # e.g. a scoped IPv6 address the C side cannot parse
        log.exception("no native data plane for remote %s", remote)
        return None
    dtls._rx_srtp, dtls._tx_srtp = locked_rx, LockedSrtp(tx)  # type: ignore[assignment]
    # asyncio's transport stops reading (it still sends for aioice and RTCP); the native
    # object reads through its own descriptor of the same socket, on the pump thread or from
    # the event loop.
    pause_datagram_reading(protocol.transport, sock.fileno())
    if pump is not None:
        pump.register(native)
    else:
        asyncio.get_running_loop().add_reader(native.fd, native.on_readable)
    dtls._fortrolig_native = native  # type: ignore[attr-defined]
    return native


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
    native = getattr(dtls, "_fortrolig_native", None)
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

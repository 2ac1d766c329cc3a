"""Every touch of aiortc's and aioice's private attributes lives in this module.

aiortc has no public API for forwarding RTP without decoding (aiortc issues #449, #55, #627), so
the SFU replaces a few methods *per instance* on the receivers and senders it owns. The versions
are pinned (aiortc==1.16.0, aioice==0.13.0) and `tests/unit/media/test_aiortc_hooks.py` fails
loudly if an upgrade moves any attribute used here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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
from aiortc.rtp import AnyRtcpPacket, RtpPacket, is_rtcp

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
    """Protects and sends an already-serialized RTP/RTCP packet on a DTLS transport.

    Skips aiortc's coroutine chain (dtls._send_rtp → ice._send → aioice send → protocol) and
    calls SRTP protect and the socket's ``sendto`` directly: measured 37 → 31 µs per forwarded
    packet in research/aiortc-sfu.md.
    """

    __slots__ = ("_dtls",)

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls

    @property
    def connected(self) -> bool:
        return self._dtls._state == rtcdtlstransport.State.CONNECTED

    def send_rtp(self, data: bytes) -> int:
        """Send one RTP packet; returns bytes on the wire (0 when not connected)."""
        return self._send(data, rtcp=False)

    def send_rtcp(self, data: bytes) -> int:
        """Send one (compound) RTCP packet; returns bytes on the wire."""
        return self._send(data, rtcp=True)

    def _send(self, data: bytes, rtcp: bool) -> int:
        dtls = self._dtls
        if dtls._state != rtcdtlstransport.State.CONNECTED:
            return 0
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return 0
        srtp = dtls._tx_srtp
        wire = srtp.protect_rtcp(data) if rtcp else srtp.protect(data)
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


def install_fast_ingress(
    dtls: RTCDtlsTransport, deliver: Callable[[RtpPacket, Any], bool], counters: Any
) -> bool:
    """Take SRTP (not SRTCP) datagrams off aioice synchronously, before its queue.

    aiortc queues every datagram and wakes the DTLS transport's reader task for each one; the
    profile (docs/performance.md) put a third of the SFU's CPU there. Here an RTP datagram is
    unprotected, parsed and routed to its receiver in aioice's own callback, and ``deliver``
    (receiver, packet) forwards it at once. STUN, DTLS and RTCP keep aiortc's normal path.
    Returns False when the transport is not ready (nothing installed).
    """
    if getattr(dtls, "_fortrolig_fast", False) or dtls._rx_srtp is None:
        return False
    connection = dtls.transport._connection
    queued = connection.data_received
    router = dtls._rtp_router
    ext = dtls._rtp_header_extensions_map
    rx = dtls._rx_srtp
    connected = rtcdtlstransport.State.CONNECTED

    def data_received(data: bytes, component: int) -> None:
        first = data[0] if data else 0
        if 127 < first < 192 and not is_rtcp(data) and dtls._state == connected:
            try:
                packet = RtpPacket.parse(rx.unprotect(data), ext)
            except Exception:  # SRTP authentication failure or a malformed header: drop
                counters.srtp_failures += 1
                return
            receiver = router.route_rtp(packet)
            if receiver is not None and deliver(packet, receiver):
                return
            return  # no forwarding receiver for this SSRC: nothing else would use it
        queued(data, component)

    connection.data_received = data_received  # type: ignore[method-assign]

    # Skip aioice's attempt to parse every media datagram as STUN (RTP/RTCP never start with
    # the 0b00 bits a STUN message has); everything else still goes through it.
    for protocol in list(getattr(connection, "_protocols", [])):
        parse_first = protocol.datagram_received

        def datagram_received(
            data: bytes, addr: tuple[Any, ...], _p: Any = protocol, _orig: Any = parse_first
        ) -> None:
            if data and 127 < data[0] < 192:
                _p.receiver.data_received(data, _p.local_candidate.component)
            else:
                _orig(data, addr)

        protocol.datagram_received = datagram_received
    dtls._fortrolig_fast = True  # type: ignore[attr-defined]
    return True

"""The private aiortc/aioice attributes the SFU relies on (see media/aiortc_hooks.py).

These fail loudly if an upgrade of the pinned aiortc==1.16.0 / aioice==0.13.0 moves them.
"""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import aiortc
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    rtcdtlstransport,
    rtcrtpreceiver,
    rtcrtpsender,
)


def test_versions_are_the_pinned_ones() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


async def test_private_attributes_exist() -> None:
    assert hasattr(aioice.ice, "get_host_addresses")
    assert hasattr(rtcdtlstransport, "SRTP_AEAD_AES_256_GCM")
    assert hasattr(rtcrtpreceiver, "get_decoder") and hasattr(rtcrtpsender, "get_encoder")
    pc = RTCPeerConnection()
    t = pc.addTransceiver("video", direction="sendonly")
    sender, receiver = t.sender, t.receiver
    for name in ("started", "rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"):
        assert hasattr(sender, f"_RTCRtpSender__{name}"), name
    for name in ("_run_rtp", "_run_rtcp", "_handle_rtcp_packet", "_ssrc", "_rtx_ssrc"):
        assert hasattr(sender, name), name
    for name in ("_RTCRtpReceiver__started", "_RTCRtpReceiver__rtcp_ssrc"):
        assert hasattr(receiver, name), name
    assert callable(receiver._RTCRtpReceiver__stop_decoder)
    dtls = receiver.transport
    for name in ("_srtp_profiles", "_state", "_tx_srtp", "_ssl", "_handle_rtp_data"):
        assert hasattr(dtls, name), name
    assert hasattr(dtls.transport, "_connection")
    assert hasattr(dtls.transport._connection, "_nominated")
    # The native data plane (native_transport, extension_ids).
    for name in ("_rx_srtp", "_rtp_router", "_rtp_header_extensions_map"):
        assert hasattr(dtls, name), name
    ids = dtls._rtp_header_extensions_map._HeaderExtensionsMap__ids
    for name in ("mid", "abs_send_time", "audio_level"):
        assert hasattr(ids, name), name
    assert callable(getattr(aioice.ice.StunProtocol, "datagram_received", None))
    await pc.close()
    await asyncio.sleep(0)


async def test_native_transport_reaches_into_a_real_connection() -> None:
    """Two aiortc peers on 127.0.0.1: every private attribute native_transport() reads is there
    once connected, and pylibsrtp exposes the session pointer and libsrtp's functions."""
    from pylibsrtp._binding import ffi, lib

    from fortrolig.media import aiortc_hooks as hooks

    hooks.restrict_host_addresses(["127.0.0.1"])
    assert ffi.addressof(lib, "srtp_protect") and ffi.addressof(lib, "srtp_unprotect")
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        a.addTransceiver("audio", direction="sendrecv")
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        for _ in range(200):
            if a.connectionState == "connected" and b.connectionState == "connected":
                break
            await asyncio.sleep(0.025)
        dtls = a.getTransceivers()[0].receiver.transport
        assert dtls._state == rtcdtlstransport.State.CONNECTED
        assert int(ffi.cast("uintptr_t", dtls._rx_srtp._srtp[0])) != 0
        pair = dtls.transport._connection._nominated[1]
        assert isinstance(pair.protocol, aioice.ice.StunProtocol)
        assert pair.protocol.transport.get_extra_info("socket").fileno() >= 0
        assert pair.protocol.local_candidate.component == 1
        assert callable(pair.protocol.receiver.data_received)
        assert pair.remote_addr[0] == "127.0.0.1"
    finally:
        await a.close()
        await b.close()

"""The private aiortc/aioice attributes the SFU relies on (see media/aiortc_hooks.py).

These fail loudly if an upgrade of the pinned aiortc==1.16.0 / aioice==0.13.0 moves them.
"""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import aiortc
from aiortc import RTCPeerConnection, rtcdtlstransport, rtcrtpreceiver, rtcrtpsender


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
    # The fast ingress path (install_fast_ingress).
    for name in ("_rx_srtp", "_rtp_router", "_rtp_header_extensions_map"):
        assert hasattr(dtls, name), name
    assert callable(dtls.transport._connection.data_received)
    assert hasattr(dtls.transport._connection, "_protocols")
    await pc.close()
    await asyncio.sleep(0)

"""The private aiortc/aioice attributes the SFU relies on (see media/aiortc_hooks.py).

These fail loudly if an upgrade of the pinned aiortc==1.16.0 / aioice==0.13.0 moves them.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

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

from fortrolig.media import aiortc_hooks as hooks


def test_versions_are_the_pinned_ones() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


# Every private aiortc/aioice/pylibsrtp name media/aiortc_hooks.py uses, by the object that has it.
PINNED: dict[str, tuple[str, ...]] = {
    "sender": (
        "_RTCRtpSender__started",
        "_RTCRtpSender__rtp_started",
        "_RTCRtpSender__rtp_exited",
        "_RTCRtpSender__rtcp_started",
        "_RTCRtpSender__rtcp_exited",
        "_run_rtp",
        "_run_rtcp",
        "_handle_rtcp_packet",
        "_ssrc",
        "_rtx_ssrc",
        "_stream_id",
        "_track_id",
        "_send_keyframe",
    ),
    "receiver": (
        "_RTCRtpReceiver__started",
        "_RTCRtpReceiver__stop_decoder",
        "_RTCRtpReceiver__rtcp_ssrc",
        "_RTCRtpReceiver__codecs",
        "_RTCRtpReceiver__jitter_buffer",
        "_RTCRtpReceiver__nack_generator",
        "_RTCRtpReceiver__remote_bitrate_estimator",
        "_RTCRtpReceiver__remote_streams",
        "_RTCRtpReceiver__rtx_ssrc",
        "_handle_rtp_packet",
        "_handle_rtcp_packet",
        "_enabled",
        "_send_rtcp",
        "_send_rtcp_nack",
    ),
    "transceiver": ("_codecs",),
    "dtls": (
        "_srtp_profiles",
        "_state",
        "_ssl",
        "_rx_srtp",
        "_tx_srtp",
        "_rtp_router",
        "_rtp_header_extensions_map",
    ),
    "ice_transport": ("_connection",),
    "ice_connection": ("_nominated", "_protocols"),
    "extensions_map": ("_HeaderExtensionsMap__ids",),
    "srtp_session": ("_srtp",),  # pylibsrtp.Session (checked on a connected transport below)
    # asyncio's selector loop: the fallback of pause_datagram_reading on Python 3.11.2.
    "event_loop": ("_remove_reader",),
}
# Private names in aiortc_hooks.py that are the SFU's own: a slot, and attributes it sets.
OURS = {"_dtls", "_fortrolig_native", "_fortrolig_track", "_fortrolig_guarded"}


def _private_names(source: str) -> set[str]:
    """Private attribute names the module reads or writes on other objects (not self/cls), and
    private names spelled as strings (getattr, setattr, mangled names)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _PRIVATE.match(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _PRIVATE.match(node.value):
                names.add(node.value)
    return names


_PRIVATE = re.compile(r"^_(?!_)[A-Za-z0-9_]*[A-Za-z0-9]$")


def test_every_private_name_the_hooks_use_is_pinned() -> None:
    used = _private_names(Path(hooks.__file__).read_text())
    pinned = {name for names in PINNED.values() for name in names}
    assert used - OURS - pinned == set(), "pin these in PINNED (and check them below)"
    assert pinned - used == set(), "no longer used by aiortc_hooks.py: unpin"


async def test_private_attributes_exist() -> None:
    assert hasattr(aioice.ice, "get_host_addresses")
    assert hasattr(rtcdtlstransport, "SRTP_AEAD_AES_256_GCM")
    assert hasattr(rtcrtpreceiver, "get_decoder") and hasattr(rtcrtpsender, "get_encoder")
    pc = RTCPeerConnection()
    t = pc.addTransceiver("video", direction="sendonly")
    dtls = t.receiver.transport
    objects: dict[str, object] = {
        "sender": t.sender,
        "receiver": t.receiver,
        "transceiver": t,
        "dtls": dtls,
        "ice_transport": dtls.transport,
        "ice_connection": dtls.transport._connection,
        "extensions_map": dtls._rtp_header_extensions_map,
        "event_loop": asyncio.get_running_loop(),
    }
    for kind, obj in objects.items():
        for name in PINNED[kind]:
            assert hasattr(obj, name), f"{kind}.{name}"
    assert callable(t.receiver._RTCRtpReceiver__stop_decoder)
    assert hasattr(dtls._rtp_router, "payload_type_table")
    assert callable(dtls._rtp_router.route_rtp)
    ids = dtls._rtp_header_extensions_map._HeaderExtensionsMap__ids
    for name in ("mid", "abs_send_time", "audio_level"):
        assert hasattr(ids, name), name
    assert callable(getattr(aioice.ice.StunProtocol, "datagram_received", None))
    await pc.close()
    await asyncio.sleep(0)


async def test_native_transport_reaches_into_a_real_connection() -> None:
    """Two aiortc peers on 127.0.0.1: every private attribute nominated_socket() and
    take_over_socket() read is there once connected, and pylibsrtp exposes the session pointer
    and libsrtp's functions."""
    from pylibsrtp._binding import ffi, lib

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
        for name in PINNED["srtp_session"]:
            assert hasattr(dtls._rx_srtp, name) and hasattr(dtls._tx_srtp, name), name
        assert int(ffi.cast("uintptr_t", dtls._rx_srtp._srtp[0])) != 0
        pair = dtls.transport._connection._nominated[1]
        assert isinstance(pair.protocol, aioice.ice.StunProtocol)
        assert pair.protocol.transport.get_extra_info("socket").fileno() >= 0
        assert pair.protocol.local_candidate.component == 1
        assert callable(pair.protocol.receiver.data_received)
        assert pair.remote_addr[0] == "127.0.0.1"
        assert callable(pair.protocol.transport.pause_reading)
        found = hooks.nominated_socket(dtls)  # inspects only: nothing is taken over
        assert found is not None and found.protocol is pair.protocol
        assert hooks.native_transport_of(dtls) is None
    finally:
        await a.close()
        await b.close()

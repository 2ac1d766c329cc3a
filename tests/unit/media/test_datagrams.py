"""The sorting step in front of every media socket (fortrolig/media/datagrams.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aioice import stun
from aiortc import RTCPeerConnection

from fortrolig.media import aiortc_hooks as hooks
from fortrolig.media.datagrams import DROP_KINDS, drop_kind

# A fixed transaction id: parameter ids must be the same in every process (xdist workers).
STUN_REQUEST = bytes(
    stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id=bytes(range(12)))
)
DTLS_RECORD = b"\x16\xfe\xfd" + bytes(8) + b"\x00\x02" + b"\x01\x00"


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"", "empty"),
        (STUN_REQUEST, None),
        (STUN_REQUEST[:19], "stun"),
        (STUN_REQUEST[:4] + b"\x00\x00\x00\x00" + STUN_REQUEST[8:], "stun"),  # no magic cookie
        (STUN_REQUEST + b"\x00", "stun"),  # length field disagrees
        (DTLS_RECORD, None),
        (DTLS_RECORD[:12], "dtls"),
        (DTLS_RECORD[:-1], "dtls"),  # record longer than the datagram
        (b"\x16\x03\x03" + DTLS_RECORD[3:], "dtls"),  # TLS, not DTLS
        (b"\x80\x60" + bytes(10), None),
        (b"\x80\x60" + bytes(9), "rtp"),
        (b"\x80\xc8" + bytes(6), None),
        (b"\x80\xc8" + bytes(5), "rtcp"),
        (b"\x7f" + bytes(30), "garbage"),
        (b"\xff" + bytes(30), "garbage"),
        (b"\x10" + bytes(30), "garbage"),
    ],
)
def test_each_kind_is_sorted(datagram: bytes, kind: str | None) -> None:
    assert drop_kind(datagram) == kind
    assert kind is None or kind in DROP_KINDS


def test_every_first_byte_and_length_is_sorted_without_raising() -> None:
    for first in range(256):
        for size in range(0, 40):
            kind = drop_kind(bytes([first]) + bytes(size))
            assert kind is None or kind in DROP_KINDS


async def test_ice_sockets_drop_malformed_datagrams_before_aioice() -> None:
    """Before the native data plane, a 0-byte datagram would reach aiortc's DTLS loop and end
    the transport (IndexError); the guard counts it instead."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    counted: list[str] = []
    hooks.guard_ice_sockets(pc, counted.append)
    hooks.guard_ice_sockets(pc, counted.append)  # idempotent: one guard per socket
    local = [
        c for d in hooks.dtls_transports(pc) for c in d.transport.iceGatherer.getLocalCandidates()
    ]
    assert local
    # A plain socket: asyncio's transports do not send empty datagrams.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        try:
            for cand in local:
                if cand.ip == "127.0.0.1":
                    udp.sendto(b"", (cand.ip, cand.port))
                    udp.sendto(b"\x7fjunk", (cand.ip, cand.port))
            for _ in range(200):
                if len(counted) >= 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            await pc.close()
    assert sorted(set(counted)) == ["empty", "garbage"]
    assert counted.count("empty") == counted.count("garbage")

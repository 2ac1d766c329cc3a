"""pause_datagram_reading: asyncio stops reading a UDP socket on every Python 3.11 release."""

from __future__ import annotations

import asyncio
import socket

from fortrolig.media.aiortc_hooks import pause_datagram_reading


class Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append(data)


class OldDatagramTransport:
    """What CPython 3.11.2's selector datagram transport does on pause_reading."""

    def pause_reading(self) -> None:
        raise NotImplementedError


async def _paused_endpoint_receives(old_python: bool) -> list[bytes]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Received, local_addr=("127.0.0.1", 0))
    try:
        sock = transport.get_extra_info("socket")
        await asyncio.sleep(0)  # the transport adds its reader on the next loop turn
        pause_datagram_reading(OldDatagramTransport() if old_python else transport, sock.fileno())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"x", sock.getsockname())
        await asyncio.sleep(0.05)
        return protocol.datagrams
    finally:
        transport.close()


async def test_pauses_with_the_transports_own_method() -> None:
    assert await _paused_endpoint_receives(old_python=False) == []


async def test_pauses_where_the_transport_cannot() -> None:
    assert await _paused_endpoint_receives(old_python=True) == []

"""Fixtures of the media unit tests: the native data plane on real sockets (native/harness.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pylibsrtp import Policy

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    Net,
    srtp_key,
    srtp_pointer,
    srtp_session,
)


@pytest.fixture
def net() -> Iterator[Net]:
    sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport: _fastpath.Transport | None = None
    try:
        sfu.bind(("127.0.0.1", 0))
        peer.bind(("127.0.0.1", 0))
        sfu.setblocking(False)
        up, down = srtp_key("fortrolig publisher->sfu"), srtp_key("fortrolig sfu->subscriber")
        sfu_rx = srtp_session(up, Policy.SSRC_ANY_INBOUND)
        sfu_tx = srtp_session(down, Policy.SSRC_ANY_OUTBOUND)
        counters = _fastpath.Counters()
        calls: list[tuple[bytes, tuple[Any, ...]]] = []
        hooks: list[Callable[[bytes], None]] = []

        def fallback(data: bytes, addr: tuple[Any, ...]) -> None:
            calls.append((data, addr))
            for hook in hooks:
                hook(data)

        transport = _fastpath.Transport(
            sfu.fileno(),
            "127.0.0.1",
            peer.getsockname()[1],
            srtp_pointer(sfu_rx),
            srtp_pointer(sfu_tx),
            (sfu_rx, sfu_tx),
            fallback,
            counters,
        )
        yield Net(
            sfu=sfu,
            peer=peer,
            transport=transport,
            counters=counters,
            peer_tx=srtp_session(up, Policy.SSRC_ANY_OUTBOUND),
            peer_rx=srtp_session(down, Policy.SSRC_ANY_INBOUND),
            fallback=calls,
            hooks=hooks,
        )
    finally:
        if transport is not None:
            transport.close()
        sfu.close()
        peer.close()


@pytest.fixture
def pump() -> Iterator[_fastpath.Pump]:
    io = _fastpath.Pump()
    try:
        yield io
    finally:
        io.stop()

"""Malformed datagrams at a live media port are dropped quietly and counted by kind (issue 18,
item 0): 10,000 empty datagrams (each one used to log an ERROR with a traceback) and every other
kind, into the server ports of a running call, which goes on."""

from __future__ import annotations

import os
import socket

from fortrolig.loadtests.participant import Participant
from fortrolig.media import aiortc_hooks as hooks
from tests.conftest import Server
from tests.support.polling import eventually

BATCH = 100  # datagrams in flight at once: far below the socket's buffer, so none is lost
STUN_MAGIC = b"\x21\x12\xa4\x42"
# One of each kind the sorting step drops (fortrolig/media/datagrams.py).
SAMPLES = {
    "stun": b"\x00\x01\x00\x07" + STUN_MAGIC + os.urandom(12),  # length not a multiple of 4
    "dtls": b"\x16\xfe\xfd" + os.urandom(5),  # shorter than a record header
    "rtp": b"\x80\x60\x00\x01\x00\x00",  # shorter than an RTP header
    "rtcp": b"\x80\xc8\x00",  # shorter than an RTCP header
    "garbage": b"\x7f" + os.urandom(40),  # no protocol starts so
}


def media_ports(p: Participant) -> list[tuple[str, int]]:
    """The server's ICE candidates this participant talks to (its media port)."""
    assert p.pc is not None
    found = set()
    for dtls in hooks.dtls_transports(p.pc):
        for cand in dtls.transport.getRemoteCandidates():
            found.add((cand.ip, cand.port))
    return sorted(found)


def dropped(server: Server, kind: str) -> float:
    return server.metric("fortrolig_media_dropped_datagrams_total", kind=kind)


async def test_ten_thousand_empty_datagrams_are_counted_not_logged(
    server: Server, call: tuple[Participant, Participant]
) -> None:
    a, b = call
    await eventually(lambda: b.frames_from(a.participant_id or "", "video") > 30, 15)
    ports = media_ports(a) + media_ports(b)
    assert ports
    start = dropped(server, "empty")
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        while sent < 10_000:
            for n in range(BATCH):
                udp.sendto(b"", ports[n % len(ports)])
            sent += BATCH
            goal = start + sent
            await eventually(lambda: dropped(server, "empty") >= goal, 10)  # noqa: B023
        for kind, datagram in SAMPLES.items():
            before = dropped(server, kind)
            for port in ports:
                udp.sendto(datagram, port)
            await eventually(lambda: dropped(server, kind) >= before + len(ports), 10, what=kind)  # noqa: B023
    assert dropped(server, "empty") == start + 10_000
    # The call goes on.
    frames = b.frames_from(a.participant_id or "", "video")
    await eventually(lambda: b.frames_from(a.participant_id or "", "video") > frames + 30, 15)
    log = server.log_path.read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
    assert log.count("datagram") == 0

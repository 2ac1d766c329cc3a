"""Mutated captured Chromium packets into a running call, which goes on (issue 18, item 8).

A real node on 127.0.0.1 and two real aiortc participants in a room; once media flows both
ways, 2,000 mutants of the captured RTP and RTCP (tests/fixtures/chromium/, mutated by
tests/support/media_fuzz.py from a fixed seed) reach the server's media ports:

* 1,000 as plain UDP datagrams from a socket of the test: anyone's garbage. The RTP keeps the
  publisher's real SSRC so that the native data plane reads it and SRTP authentication refuses
  it; the RTCP is read as SRTCP and refused the same way.
* 1,000 protected with the participants' own SRTP sessions, as a broken or hostile peer would
  send them: RTP under the captured (unknown) SSRCs, which reaches the Python fallback and
  aiortc's router; RTCP naming the server's real legs, which the native RTCP reader acts on.

Then the subscriber keeps receiving the publisher's media (decoded frames and received packets
keep rising), no handler error was counted, no ERROR or traceback was logged, and the
malformed and SRTP-failure counters rose.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from pylibsrtp import Error as SrtpError

from fortrolig.loadtests.participant import Participant
from tests.conftest import Server
from tests.integration.media.test_media_datagrams import media_ports
from tests.support import media_fuzz as mf
from tests.support.polling import eventually

PACKETS = 2_000  # in four equal kinds: {plain, protected} x {RTP, RTCP}
BATCH = 50  # datagrams in flight at once: far below the socket buffers, so none is lost
RNG_SEED = 18  # the number: the same 2,000 mutants on every run
RTP = mf.seeds("rtp")
RTCP = mf.seeds("rtcp")

pytestmark = pytest.mark.timeout(120)


def ssrcs(sdp: str) -> list[int]:
    return sorted({int(s) for s in re.findall(r"^a=ssrc:(\d+) ", sdp, re.M)})


async def packets_received(p: Participant) -> int:
    """RTP packets ``p`` received from the server, all streams (its own statistics)."""
    assert p.pc is not None
    report = await p.pc.getStats()
    return sum(int(getattr(s, "packetsReceived", 0) or 0) for s in report.values()
               if s.type == "inbound-rtp")  # fmt: skip


COUNTERS = ("handler_errors", "srtp_failures", "malformed", "dropped_datagrams")


def counters(server: Server) -> dict[str, float]:
    """The media counters the test watches, summed over labels (one scrape)."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for key, value in server.metrics().items():
        base = key.partition("{")[0]
        for name in COUNTERS:
            if base == f"fortrolig_media_{name}_total":
                totals[name] += value
    return totals


def plain_mutants(rng: random.Random, publisher_ssrc: int, n: int) -> list[bytes]:
    """Unauthenticated: RTP under a publisher's real SSRC (before mutation), and RTCP."""
    out = []
    for i in range(n):
        if i % 2:
            seed = bytearray(rng.choice(RTP).data)
            struct.pack_into("!I", seed, 8, publisher_ssrc)
            out.append(mf.mutate_rtp(bytes(seed), rng.randint))
        else:
            out.append(mf.mutate_rtcp(rng.choice(RTCP).data, rng.randint))
    return out


def protected_mutants(rng: random.Random, protect: Any, legs: list[int], n: int) -> list[bytes]:
    """Keyed like the peer: RTP under the captured SSRCs, RTCP naming the server's legs."""
    named = sorted(set().union(*(mf.named_ssrcs(s.data) for s in RTCP)))
    names = {ssrc: legs[i % len(legs)] for i, ssrc in enumerate(named)}
    out: list[bytes] = []
    while len(out) < n:
        try:
            if len(out) % 2:
                plain = bytearray(mf.mutate_rtp(rng.choice(RTP).data, rng.randint))
                if len(plain) >= 4:  # a fresh sequence number: no replay of an earlier mutant
                    struct.pack_into("!H", plain, 2, len(out))
                out.append(protect.protect(bytes(plain)))
            else:
                data = mf.renamed(rng.choice(RTCP).data, names)
                out.append(protect.protect_rtcp(mf.mutate_rtcp(data, rng.randint)))
        except SrtpError:
            continue  # libsrtp will not protect it: no peer could send it
    return out


async def barrage(udp: socket.socket, datagrams: list[bytes], port: tuple[str, int]) -> None:
    for start in range(0, len(datagrams), BATCH):
        for data in datagrams[start : start + BATCH]:
            udp.sendto(data, port)
        await asyncio.sleep(0.02)  # the participants' own media and RTCP go on meanwhile


async def rising(read: Callable[[], Any], by: int, limit: float, what: str) -> None:
    first = await read()
    deadline = asyncio.get_running_loop().time() + limit
    while await read() < first + by:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not rise by {by} in {limit} s")
        await asyncio.sleep(0.1)


async def test_mutated_captured_packets_into_a_live_call(
    server: Server, call: tuple[Participant, Participant]
) -> None:
    a, b = call
    a_id, b_id = a.participant_id or "", b.participant_id or ""
    await eventually(lambda: b.frames_from(a_id, "video") > 30, 20)
    await eventually(lambda: a.frames_from(b_id, "video") > 30, 20)
    assert a.pc is not None and b.pc is not None
    (a_port,), (b_port,) = media_ports(a), media_ports(b)
    a_sends, b_sends = ssrcs(a.pc.localDescription.sdp), ssrcs(b.pc.localDescription.sdp)
    b_receives = ssrcs(b.pc.remoteDescription.sdp)  # the server's legs toward b
    assert a_sends and b_sends and b_receives
    before = counters(server)
    log_lines = len(server.log_path.read_text().splitlines())

    rng = random.Random(RNG_SEED)
    quarter = PACKETS // 4
    plain_a = plain_mutants(rng, a_sends[0], quarter)
    plain_b = plain_mutants(rng, b_sends[0], quarter)
    from_a = protected_mutants(rng, mf.tx_session(a.pc), b_receives, quarter)
    from_b = protected_mutants(rng, mf.tx_session(b.pc), b_receives, quarter)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        await barrage(udp, plain_a, a_port)
        await barrage(udp, plain_b, b_port)
        await barrage(udp, from_a, a_port)
        await barrage(udp, from_b, b_port)

    # Forwarding goes on, both ways.
    await rising(lambda: _frames(b, a_id), 30, 15, "frames b decodes from a")
    await rising(lambda: _frames(a, b_id), 30, 15, "frames a decodes from b")
    await rising(lambda: packets_received(b), 100, 10, "packets b receives")
    # The garbage was seen and counted (media metrics come from the workers once a second).
    await eventually(lambda: counters(server)["srtp_failures"] >= before["srtp_failures"] + 100, 5)
    await eventually(lambda: counters(server)["malformed"] > before["malformed"], 5)
    await eventually(lambda: counters(server)["dropped_datagrams"] > before["dropped_datagrams"], 5)
    assert counters(server)["handler_errors"] == before["handler_errors"]
    added = [
        line
        for line in server.log_path.read_text().splitlines()[log_lines:]
        if " aiohttp.access " not in line  # the test's own scrapes of /metrics
    ]
    assert not [line for line in added if " ERROR " in line or "Traceback" in line], added[-20:]
    assert len(added) < 20, added[-20:]  # rate-limited at most: never a line per packet


async def _frames(p: Participant, publisher_id: str) -> int:
    return p.frames_from(publisher_id, "video")

"""Per-packet cost of the native forwarding path, with and without a Python subscriber (tap).

    .venv/bin/python -m bench.tap_bench [--packets 200000] [--legs 2] [--out FILE]

A focused micro-benchmark of what a recorder adds to the SFU's data plane: one publisher
socket with its native Transport (real libsrtp AES-256-GCM sessions), one routed Track and
``--legs`` attached Legs sending to a subscriber socket on 127.0.0.1. The publisher's
datagrams are SRTP-protected up front; the timed loop only sends them to the SFU socket in
batches and lets the Transport drain them (recvmmsg, unprotect, parse, fan-out, rewrite,
protect, sendto) on this thread, like the event-loop mode does. Three cases, interleaved in
rounds so that machine noise hits them alike:

* ``no_tap``: no subscriber; the cost every room without a recorder pays;
* ``tap``: a Python subscriber callable receives every packet (what a recorder pays, without
  the recorder's own work).

Run it before and after a data-plane change to compare ``no_tap`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import select
import socket
import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

from pylibsrtp import Policy, Session

from fortrolig.media import _fastpath
from fortrolig.media import aiortc_hooks as hooks

MEDIA_SSRC = 0x11111111
PT = 96
BATCH = 16
PAYLOAD = bytes(1100)


def _session(label: str, kind: int) -> Session:
    key = hashlib.sha512(label.encode()).digest()[:44]
    profile = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
    return Session(Policy(key=key, ssrc_type=kind, srtp_profile=profile))


def _pointer(session: Session) -> int:
    return hooks._srtp_pointer(session)  # the same cast the SFU uses (private on purpose)


class Rig:
    """SFU socket + Transport + Track + legs, and a publisher that sends protected packets."""

    def __init__(self, legs: int) -> None:
        self.sfu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.sfu, self.peer, self.sink):
            s.bind(("127.0.0.1", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sfu.setblocking(False)
        self.sink.setblocking(False)
        up, down = "bench up", "bench down"
        rx = _session(up, Policy.SSRC_ANY_INBOUND)
        tx = _session(down, Policy.SSRC_ANY_OUTBOUND)
        self.counters = _fastpath.Counters()
        self.transport = _fastpath.Transport(
            self.sfu.fileno(), "127.0.0.1", self.sink.getsockname()[1], _pointer(rx),
            _pointer(tx), (rx, tx), lambda data, addr: None, self.counters,
        )  # fmt: skip
        self.track = _fastpath.Track(
            self.counters, keyframe_codec=_fastpath.KEYFRAME_NONE, clock_rate=90000,
            payload_type=PT, rtx_payload_type=-1, nack=True,
            on_keyframe=lambda: None, on_missing=lambda seqs: None,
        )  # fmt: skip
        self.transport.route(MEDIA_SSRC, self.track)
        self.legs = []
        for i in range(legs):
            leg = _fastpath.Leg(self.counters, gated=False, seq_start=i, ts_delta=i, rtx_seq=0)
            leg.attach(
                self.transport, ssrc=0x22220000 + i, rtx_ssrc=0x33330000 + i, payload_type=PT,
                rtx_payload_type=-1, mid=b"1", mid_id=1, abs_send_time_id=2, audio_level_id=0,
            )  # fmt: skip
            self.track.add_leg(leg)
            self.legs.append(leg)
        self._tx = _session(up, Policy.SSRC_ANY_OUTBOUND)
        self._seq = 0

    def protected(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            self._seq = (self._seq + 1) & 0xFFFF
            header = struct.pack("!BBHII", 0x80, PT, self._seq, self._seq * 3000, MEDIA_SSRC)
            out.append(self._tx.protect(header + PAYLOAD))
        return out

    def run(self, packets: list[bytes]) -> float:
        """Seconds of this thread's CPU to forward ``packets``."""
        address = self.sfu.getsockname()
        spent = 0.0
        for i in range(0, len(packets), BATCH):
            for datagram in packets[i : i + BATCH]:
                self.peer.sendto(datagram, address)
            select.select([self.sfu], [], [], 0.5)
            start = time.thread_time()
            self.transport.on_readable()
            spent += time.thread_time() - start
            self._drain()
        return spent

    def _drain(self) -> None:
        try:
            while True:
                self.sink.recv(4096)
        except BlockingIOError:
            return

    def close(self) -> None:
        self.transport.close()
        for s in (self.sfu, self.peer, self.sink):
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--legs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args()
    rig = Rig(args.legs)
    seen: list[int] = []
    has_tap = hasattr(rig.track, "set_tap")
    cases: dict[str, Callable[[], None]] = {"no_tap": lambda: None}
    if has_tap:
        cases["tap"] = lambda: None
    per_round = args.packets // args.rounds
    results: dict[str, list[float]] = {name: [] for name in cases}
    try:
        rig.run(rig.protected(2000))  # warm-up
        for _ in range(args.rounds):
            for name in cases:
                if has_tap:
                    rig.track.set_tap(seen.append if name == "tap" else None)
                packets = rig.protected(per_round)
                results[name].append(1e6 * rig.run(packets) / per_round)
                seen.clear()
        forwarded = rig.counters.forwarded_packets
    finally:
        rig.close()
    report: dict[str, Any] = {
        "legs": args.legs,
        "packets_per_case": per_round * args.rounds,
        "forwarded_packets": forwarded,
        "us_per_packet_median": {k: round(statistics.median(v), 3) for k, v in results.items()},
        "us_per_packet_min": {k: round(min(v), 3) for k, v in results.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

"""A network link with delay and loss, in user space: ``python -m tests.support.wire A B``.

This machine's kernel has no ``sch_netem`` (``tc qdisc ... netem`` answers "Specified qdisc kind
is unknown"), so the impaired link of the poor-network tests is this process: it runs in a
namespace of its own between two veth ends, reads every Ethernet frame arriving on one
(``AF_PACKET``) and sends it out of the other after ``delay_ms``, unless it drops it (``loss``,
0..1, each frame independently) or the link is blacked out. Frames keep their order. Offloads
must be off on all four veth ends (tests/support/impaired_net.py does it with ethtool): a frame
with a checksum left to the hardware, or a segmentation offload's 64 KiB frame, would not
survive being sent again.

Control on stdin, one JSON object per line: ``{"delay_ms": 75, "loss": 0.05}``,
``{"blackout": true}``; ``{"stats": true}`` prints ``{"forwarded": n, "dropped": n}`` on stdout.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from typing import Any

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # a frame this socket's interface sends (ours): not to be forwarded again
FRAME_MAX = 65536


class Wire:
    """Forwards frames between two interfaces with the configured impairment."""

    def __init__(self, a: str, b: str) -> None:
        self.socks = (self._open(a), self._open(b))
        self.delay_s = 0.0
        self.loss = 0.0
        self.blackout = False
        self.forwarded = 0
        self.dropped = 0
        self.rng = random.Random()

    @staticmethod
    def _open(ifname: str) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((ifname, 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        return s

    def configure(self, cmd: dict[str, Any]) -> None:
        if "delay_ms" in cmd:
            self.delay_s = max(0.0, float(cmd["delay_ms"]) / 1000)
        if "loss" in cmd:
            self.loss = min(1.0, max(0.0, float(cmd["loss"])))
        if "blackout" in cmd:
            self.blackout = bool(cmd["blackout"])

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame, addr = src.recvfrom(FRAME_MAX)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            if self.blackout or (self.loss and self.rng.random() < self.loss):
                self.dropped += 1
                continue
            self.forwarded += 1
            if self.delay_s:
                loop.call_later(self.delay_s, self._send, dst, frame)
            else:
                self._send(dst, frame)

    @staticmethod
    def _send(dst: socket.socket, frame: bytes) -> None:
        try:
            dst.send(frame)
        except OSError:
            pass  # a full queue drops the frame, as a link would

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        a, b = self.socks
        loop.add_reader(a, self.pump, a, b)
        loop.add_reader(b, self.pump, b, a)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)
        while line := await reader.readline():
            cmd = json.loads(line)
            self.configure(cmd)
            if cmd.get("stats"):
                print(
                    json.dumps({"forwarded": self.forwarded, "dropped": self.dropped}), flush=True
                )
            else:
                print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(Wire(sys.argv[1], sys.argv[2]).run())

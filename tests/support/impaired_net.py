"""Two hosts joined by an impaired link, in network namespaces the test creates itself.

    [client] c0 198.18.0.2 ── c1 [wire: tests/support/wire.py] s1 ── s0 198.18.0.1 [server]

The server side is where the node, the test's own HTTP calls and any unimpaired participant
live: :func:`impaired_link` moves the calling thread into it for the block (``setns``; processes
and sockets made from that thread meanwhile are created there, other threads are unaffected),
so ``start_server(..., host=SERVER_ADDR)`` and a Chromium launched normally are on the good side.
A Chromium launched through :attr:`ImpairedLink.chromium` (a wrapper: ``ip netns exec``) runs in
the client namespace, and everything it sends or receives crosses the wire, whose delay, loss
and blackout the test sets. Nothing leaves the namespaces: 198.18.0.0/15 is the benchmarking
range (RFC 2544), reachable only across this veth pair; each test's namespaces are its own, so
parallel tests reuse the addresses without meeting.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_ADDR = "198.18.0.1"
CLIENT_ADDR = "198.18.0.2"
PREFIX_LEN = 24
CLONE_NEWNET = 0x40000000
ROOT = Path(__file__).resolve().parents[2]
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass
class ImpairedLink:
    """The link's control: impair it, black it out, read what it forwarded and dropped."""

    names: dict[str, str]  # "client", "wire", "server" -> namespace name
    wire: subprocess.Popen[str]
    chromium: Path  # runs /usr/bin/chromium in the client namespace

    def _ask(self, cmd: dict[str, object]) -> str:
        assert self.wire.stdin is not None and self.wire.stdout is not None
        self.wire.stdin.write(json.dumps(cmd) + "\n")
        self.wire.stdin.flush()
        return self.wire.stdout.readline().strip()

    def impair(self, delay_ms: float = 0, loss: float = 0.0) -> None:
        """Each direction: ``delay_ms`` one way (RTT is twice it), ``loss`` of frames (0..1)."""
        assert self._ask({"delay_ms": delay_ms, "loss": loss, "blackout": False}) == "ok"

    def blackout(self, on: bool = True) -> None:
        """Drop everything both ways (the cable pulled), or stop doing so."""
        assert self._ask({"blackout": on}) == "ok"

    def stats(self) -> dict[str, int]:
        """Frames forwarded and dropped so far, both directions together."""
        return dict(json.loads(self._ask({"stats": True})))


def _namespace_pids(name: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if int(p) != os.getpid()]


def _delete(name: str) -> None:
    """Stop what is left inside ``name`` (by PID; a process ending by itself gets a moment)."""
    deadline = time.monotonic() + 3.0
    while (pids := _namespace_pids(name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _build(names: dict[str, str]) -> None:
    for name in names.values():
        _run("ip", "netns", "add", name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
    wire = names["wire"]
    for near, far, side in (("c1", "c0", "client"), ("s1", "s0", "server")):
        veth = ("link", "add", near, "type", "veth", "peer", "name", far, "netns", names[side])
        _run("ip", "-n", wire, *veth)
    _run("ip", "-n", names["client"], "addr", "add", f"{CLIENT_ADDR}/{PREFIX_LEN}", "dev", "c0")
    _run("ip", "-n", names["server"], "addr", "add", f"{SERVER_ADDR}/{PREFIX_LEN}", "dev", "s0")
    for ns, dev in ((names["client"], "c0"), (names["server"], "s0"), (wire, "c1"), (wire, "s1")):
        # Checksums and segmentation done in software: the wire re-sends whole, final frames.
        off = ("tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
        _run("ip", "netns", "exec", ns, "ethtool", "-K", dev, *off)
        _run("ip", "-n", ns, "link", "set", dev, "up")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread in namespace ``name`` for the block, then back where it was."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


@contextlib.contextmanager
def impaired_link(tmp: Path) -> Iterator[ImpairedLink]:
    """The three namespaces, the wire between them, and this thread on the server side."""
    tag = f"ft{os.getpid()}x{time.monotonic_ns() % 100000}"
    names = {"client": f"{tag}c", "wire": f"{tag}w", "server": f"{tag}s"}
    wire: subprocess.Popen[str] | None = None
    try:
        _build(names)
        # Real-time priority: the emulated link keeps its delay when the browsers and the
        # other test worker load both cores (it forwards a few hundred frames a second).
        wire = subprocess.Popen(
            [
                "chrt",
                "--fifo",
                "10",
                "ip",
                "netns",
                "exec",
                names["wire"],
                sys.executable,
                "-m",
                "tests.support.wire",
                "c1",
                "s1",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert wire.stdout is not None and wire.stdout.readline().strip() == "ready"
        chromium = tmp / "chromium-client-ns"
        chromium.write_text(
            f'#!/bin/sh\nexec ip netns exec {names["client"]} /usr/bin/chromium "$@"\n'
        )
        chromium.chmod(0o755)
        with entered(names["server"]):
            yield ImpairedLink(names, wire, chromium)
    finally:
        if wire is not None:
            wire.terminate()
            try:
                wire.wait(timeout=5)
            except subprocess.TimeoutExpired:
                wire.kill()
                wire.wait()
            for pipe in (wire.stdin, wire.stdout):
                if pipe is not None:
                    pipe.close()
        for name in names.values():
            _delete(name)

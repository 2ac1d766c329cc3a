"""A real ``redis-server`` (Debian's package) on a free loopback port, started by the tests.

No persistence (``--save ""``, no AOF): a restart loses every key, the harsher of the two
outages a node must survive (a restarted Redis forgets the registry and the leases; a paused one
keeps them).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempRedis:
    """One redis-server process; :meth:`stop` and :meth:`start` keep its port."""

    def __init__(self, folder: Path) -> None:
        if not shutil.which(REDIS_SERVER):
            raise RuntimeError(f"{REDIS_SERVER} not found: run `make test` (it apt-installs it)")
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) on the same port; returns once it answers PING."""
        log = open(self.folder / "redis.log", "ab")  # the child keeps its own descriptor
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start: " + self._log())
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _log(self) -> str:
        return (self.folder / "redis.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop it (SIGKILL: no goodbye to clients, as a crash or a lost host)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

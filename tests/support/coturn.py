"""A real coturn (Debian's /usr/bin/turnserver) for one test module, on free loopback ports.

Its configuration is the one we ship (deploy/coturn/turnserver.conf) with only what a test must
change: realm, listening and relay address 127.0.0.1, free ports, the REST secret, a test
certificate for TLS, a log file in tmp_path, no privilege drop. ``allow_loopback`` (Chromium
tests, where the SFU peer is 127.0.0.1) drops the loopback denials and adds
``allow-loopback-peers``; never in the shipped file. Started and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fortrolig.signaling.turn import turn_credentials
from tests.support.tls_certs import ServerCert, write_private

TURNSERVER = os.environ.get("FORTROLIG_TURNSERVER", "/usr/bin/turnserver")
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "coturn" / "turnserver.conf"
REALM = "turn.test.invalid"
SECRET = "test-only-turn-rest-secret-0123456789abcdef"

# Keys of the shipped file a test run replaces with its own values.
_REPLACED = {
    "realm",
    "server-name",
    "listening-port",
    "tls-listening-port",
    "cert",
    "pkey",
    "log-file",
    "proc-user",
    "proc-group",
}
# Denials dropped with allow_loopback (the SFU is the relay's peer on 127.0.0.1).
_LOOPBACK_DENIALS = {"denied-peer-ip=127.0.0.0-127.255.255.255", "denied-peer-ip=::1-::1"}


@dataclass
class Coturn:
    """A running turnserver and what a test needs to use it."""

    proc: subprocess.Popen[bytes]
    port: int  # UDP and TCP
    tls_port: int | None
    log_path: Path
    config_path: Path

    def credentials(self, user: str, ttl_s: int = 600) -> tuple[str, str]:
        """TURN REST username and password, as the node mints them."""
        creds = turn_credentials(SECRET.encode(), user, time.time(), ttl_s)
        return creds.username, creds.credential

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def config_text(
    port: int,
    tls_port: int | None,
    cert: ServerCert | None,
    log_path: Path,
    allow_loopback: bool,
) -> str:
    """The shipped configuration with the test's listeners, secret, certificate and log."""
    kept = []
    for line in SHIPPED.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in _REPLACED or (allow_loopback and line.strip() in _LOOPBACK_DENIALS):
            continue
        kept.append(line)
    extra = [
        f"realm={REALM}",
        f"server-name={REALM}",
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"listening-port={port}",
        f"static-auth-secret={SECRET}",
        f"log-file={log_path}",
        f"userdb={log_path.parent / 'turndb'}",
        f"pidfile={log_path.parent / 'turnserver.pid'}",
        "no-stdout-log",
    ]
    if cert is not None and tls_port is not None:
        extra += [f"tls-listening-port={tls_port}", f"cert={cert.cert_file}"]
        extra += [f"pkey={cert.key_file}"]
    else:
        extra += ["no-tls", "no-dtls"]
    if allow_loopback:
        extra.append("allow-loopback-peers")
    return "\n".join([*kept, "# --- test run ---", *extra, ""])


def _free_udp_and_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (TURN listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for coturn")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_coturn(tmp: Path, *, allow_loopback: bool, cert: ServerCert | None = None) -> Coturn:
    """Start turnserver on free loopback ports; waits until it accepts TCP connections."""
    if not shutil.which(TURNSERVER):
        raise RuntimeError(f"{TURNSERVER} missing: run `make deps-system` (it installs coturn)")
    port = _free_udp_and_tcp_port()
    tls_port = _free_udp_and_tcp_port() if cert is not None else None
    log_path = tmp / "turnserver.log"
    config_path = tmp / "turnserver.conf"
    # Private: it holds the REST secret.
    write_private(config_path, config_text(port, tls_port, cert, log_path, allow_loopback).encode())
    with open(tmp / "turnserver.out", "wb") as out:
        proc = subprocess.Popen(
            [TURNSERVER, "-c", str(config_path)], stdout=out, stderr=subprocess.STDOUT
        )
    turn = Coturn(proc, port, tls_port, log_path, config_path)
    deadline = time.monotonic() + 15
    while not (_listening(port) and (tls_port is None or _listening(tls_port))):
        if proc.poll() is not None or time.monotonic() > deadline:
            turn.stop()
            raise RuntimeError(f"turnserver did not start: {turn.log()[-4000:]}")
        time.sleep(0.1)
    return turn

"""The ``[edge]`` and ``[metrics]`` sections: what a connection may cost, and who reads metrics.

``[edge]`` bounds what one client can hold open: the time to send request headers and a
request body (cut off with ``408``), concurrent connections per client address and for the
node, and concurrent WebSocket connections per client address (``server.trusted_proxies``
decides what the client's address is: behind a trusted proxy, the forwarded one).

``[metrics]`` decides where ``/metrics`` answers: on its own listener (``listen``, e.g. a
private interface or loopback), and/or on the node's listener with a bearer secret read from a
private file (``token_file``). With neither, only a request from this machine that no proxy
forwarded gets it (a laptop, the tests); docs/operations.md has the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fortrolig.core.config_rules import require


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Timeouts and connection caps of the node's HTTP listener (docs/security.md)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 4096
    max_connections_per_address: int = 64
    max_websockets_per_address: int = 16

    def __post_init__(self) -> None:
        require(1.0 <= self.header_timeout_s <= 300.0, "edge.header_timeout_s", "must be in 1..300")
        require(1.0 <= self.body_timeout_s <= 600.0, "edge.body_timeout_s", "must be in 1..600")
        require(
            1 <= self.max_connections <= 1_000_000, "edge.max_connections", "must be in 1..1000000"
        )
        require(
            1 <= self.max_connections_per_address <= self.max_connections,
            "edge.max_connections_per_address",
            "must be in 1..edge.max_connections",
        )
        require(
            1 <= self.max_websockets_per_address <= self.max_connections_per_address,
            "edge.max_websockets_per_address",
            "must be in 1..edge.max_connections_per_address",
        )


def split_listen(value: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) as a pair; None when malformed."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    return host, int(port)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where ``/metrics`` answers (docs/operations.md, "Metrics")."""

    listen: str = ""
    token_file: Path | None = None

    def __post_init__(self) -> None:
        require(
            self.listen == "" or split_listen(self.listen) is not None,
            "metrics.listen",
            "must be empty or host:port (e.g. 127.0.0.1:9750, [::1]:9750)",
        )

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """The separate metrics listener's (host, port), when configured."""
        return split_listen(self.listen) if self.listen else None

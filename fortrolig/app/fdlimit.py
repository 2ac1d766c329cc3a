"""The node's open-file limit (RLIMIT_NOFILE): raised at start to what its capacity needs.

Every accepted connection (HTTP or a signaling WebSocket) is a descriptor in the signaling
process, and every media participant holds UDP sockets in the process that runs its room (one
per ICE host address: aioice gathers one socket per address, and with BUNDLE and rtcp-mux one
component). Distributions start services with a soft limit of 1024, far below
``edge.max_connections`` (4096 by default), so the node raises its soft limit to the hard limit
before anything opens, and says in the log when even that is too little (docs/operations.md,
"File descriptors").
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Descriptors a node holds besides its connections and media sockets: the listening sockets,
# epoll, the database, key files, logs, worker pipes, the native I/O thread's eventfd, etc.
# (an idle `fortrolig serve` holds about 30; the rest is headroom).
RESERVE_FDS = 256
# UDP sockets per media participant and ICE host address (measured: make bench-memory).
MEDIA_FDS_PER_ADDRESS = 1

GetLimit = Callable[[int], tuple[int, int]]
SetLimit = Callable[[int, tuple[int, int]], None]


@dataclass(frozen=True, slots=True)
class NofileLimit:
    """What :func:`raise_nofile_limit` found and left: soft and hard limits, and the need."""

    before: int
    soft: int
    hard: int
    needed: int
    error: str | None = None

    @property
    def enough(self) -> bool:
        """Whether the soft limit covers the need (an infinite soft limit always does)."""
        return self.soft == resource.RLIM_INFINITY or self.soft >= self.needed


def fds_needed(max_connections: int, ice_addresses: int, media_in_process: bool) -> int:
    """Descriptors the busiest process of a node may need at its configured capacity.

    The worst case of either process: the signaling process holds one per connection (and,
    with the media worker inside it, each connection may also be a media participant); a media
    worker process may hold every participant's sockets, when all rooms land on it.
    """
    media = max_connections * MEDIA_FDS_PER_ADDRESS * max(1, ice_addresses)
    if media_in_process:
        return RESERVE_FDS + max_connections + media
    return RESERVE_FDS + max(max_connections, media)


def raise_nofile_limit(
    needed: int,
    getrlimit: GetLimit = resource.getrlimit,
    setrlimit: SetLimit = resource.setrlimit,
) -> NofileLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit; never lower it.

    With an infinite hard limit the soft one goes to ``needed`` only (Linux refuses an infinite
    open-file limit, and ``fs.nr_open`` caps it). A refusal from the kernel leaves the limit as
    it was and is reported in ``error``. Child processes (media workers) inherit the result.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return NofileLimit(soft, soft, hard, needed)
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if target <= soft:
        return NofileLimit(soft, soft, hard, needed)
    try:
        setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return NofileLimit(soft, soft, hard, needed, error=f"{type(exc).__name__}: {exc}")
    return NofileLimit(soft, target, hard, needed)


def _shown(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def report(limit: NofileLimit, max_connections: int) -> None:
    """One log line with the limit the node got; a warning when it is below the need."""
    log.info(
        "open-file limit: soft %s (was %s), hard %s; this node's capacity needs %d",
        _shown(limit.soft),
        _shown(limit.before),
        _shown(limit.hard),
        limit.needed,
    )
    if limit.error is not None:
        log.warning("could not raise the open-file limit: %s", limit.error)
    if not limit.enough:
        log.warning(
            "the open-file limit (%s) is below the %d descriptors that edge.max_connections = %d "
            "and the media sockets need: connections beyond it fail with EMFILE. Raise the hard "
            "limit (systemd LimitNOFILE=, podman/docker --ulimit nofile=N:N; docs/operations.md)",
            _shown(limit.soft),
            limit.needed,
            max_connections,
        )

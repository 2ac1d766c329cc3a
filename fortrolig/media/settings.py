"""Settings the SFU needs, independent of how the application loads its configuration."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server offered to peers (``urls`` as in RTCIceServer)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class MediaSettings:
    """What the SFU is told at start-up.

    ``ice_host_addresses`` are the only local addresses offered as ICE host candidates: aioice
    would otherwise offer every interface's address. ``ice_servers`` is passed explicitly to
    every peer connection because aiortc adds Google's public STUN server when it is absent.
    """

    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)
    max_bitrate_bps: int = 2_500_000
    min_bitrate_bps: int = 100_000
    keyframe_min_interval_ms: int = 300
    forbid_transcoding: bool = True
    # Read media sockets on a native thread (no event-loop wake-up per datagram); False reads
    # them from the event loop with the same native code (docs/performance.md compares both).
    io_thread: bool = True
    # Where recorders write their encrypted files (the node's data directory); "" = no
    # recording on this node.
    recording_dir: str = ""

"""Type stubs of the load generator's native participant (fortrolig/loadtests/native/)."""

from collections.abc import Callable, Sequence
from typing import Any

def init() -> None: ...
def rtp_header(data: bytes | bytearray | memoryview, /) -> tuple[int, int] | None: ...

class Clip:
    frames: int
    video: int
    def __init__(
        self,
        video: bool,
        frames: list[bytes],
        keyframes: list[bool],
        step: int,
        period: float,
        jitter: list[int],
    ) -> None: ...

class Peer:
    fd: int
    closed: int
    rtt: float
    def __init__(
        self,
        fd: int,
        remote_host: str,
        remote_port: int,
        rx: int,
        tx: int,
        keep: object,
        fallback: Callable[[bytes, tuple[Any, ...]], object],
    ) -> None: ...
    def set_sender(
        self,
        clip: Clip,
        ssrc: int,
        payload_type: int,
        mid_id: int,
        mid: bytes,
        seq: int,
        ts_base: int,
    ) -> None: ...
    def set_payload_types(
        self, audio: Sequence[int], video: Sequence[int], rtx: Sequence[int], /
    ) -> None: ...
    def request_keyframe(self) -> None: ...
    def set_paused(self, paused: bool, /) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def close_window(self, end: float, /) -> None: ...
    def first_frame_at(self) -> float | None: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...

class Engine:
    fd: int
    peers: int
    wakeups: int
    ticks: int
    sendmmsg_calls: int
    def __init__(self) -> None: ...
    def on_readable(self) -> None: ...
    def add(self, peer: Peer, /) -> None: ...
    def remove(self, peer: Peer, /) -> None: ...
    def set_paused(self, paused: bool, /) -> None: ...
    def close(self) -> None: ...

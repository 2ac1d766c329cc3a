"""Type stub of the native data plane (fortrolig/media/native/)."""

from collections.abc import Callable
from typing import Any

from typing_extensions import Buffer

KEYFRAME_NONE: int
KEYFRAME_VP8: int
KEYFRAME_H264: int
CACHE_SIZE: int
RING_SIZE: int

def init(srtp_protect: int, srtp_unprotect: int, srtp_unprotect_rtcp: int, /) -> None: ...
def is_keyframe_start(codec: int, payload: Buffer) -> bool: ...

class Counters:
    ingress_packets: int
    forwarded_packets: int
    forwarded_bytes: int
    gated_drops: int
    rtx_received: int
    rtx_discarded: int
    unknown_payload_type: int
    srtp_failures: int
    retransmitted: int
    nack_unanswered: int
    nack_given_up: int
    malformed: int
    send_errors: int
    native_datagrams: int
    rtcp_received: int
    nack_received: int
    pli_received: int
    fir_received: int
    remb_received: int
    def __init__(self) -> None: ...
    def increment(self, name: str, n: int = 1, /) -> None: ...

class Transport:
    fd: int
    closed: int
    def __init__(
        self,
        fd: int,
        remote_host: str,
        remote_port: int,
        rx: int,
        tx: int,
        keep: object,
        fallback: Callable[[bytes, tuple[Any, ...]], None],
        counters: Counters,
    ) -> None: ...
    def on_readable(self) -> None: ...
    def route(self, ssrc: int, track: Track) -> bool: ...
    def unroute(self, track: Track) -> None: ...
    def routes(self) -> list[int]: ...
    def rtcp(self, packet: Buffer, /) -> None: ...
    def close(self) -> None: ...

class Track:
    media_ssrc: int
    packets_received: int
    closed: int
    leg_count: int
    has_sr: int
    sr_ntp: int
    sr_rtp: int
    sr_arrived: float
    tapped: Callable[[bytes], None] | None
    def __init__(
        self,
        counters: Counters,
        keyframe_codec: int,
        clock_rate: int,
        payload_type: int,
        rtx_payload_type: int,
        nack: bool,
        on_keyframe: Callable[[], None],
        on_missing: Callable[[list[int]], None],
    ) -> None: ...
    def ingest(self, packet: Buffer) -> None: ...
    def set_sender_report(self, ntp: int, rtp: int, arrived: float, /) -> None: ...
    def set_tap(self, tap: Callable[[bytes], None] | None, /) -> None: ...
    def set_codec(self, payload_type: int, rtx_payload_type: int, /) -> None: ...
    def expect_codec(self, payload_type: int, rtx_payload_type: int, /) -> None: ...
    def set_options(self, media_ssrc: int = 0, audio_level_id: int = -1) -> None: ...
    def add_leg(self, leg: Leg, /) -> None: ...
    def remove_leg(self, leg: Leg, /) -> None: ...
    def report(self) -> tuple[int, int, int, int] | None: ...
    def nack_due(self, now: float | None = None, /) -> list[int]: ...
    def nack_wait(self, now: float | None = None, /) -> float | None: ...
    @property
    def nack_answer(self) -> float | None: ...
    def missing(self) -> list[int]: ...
    def close(self) -> None: ...

class Leg:
    packets: int
    octets: int
    last_in_ts: int
    last_arrival: float
    ts_delta: int
    ssrc: int
    closed: int
    forwarding: bool
    remb_bps: int
    remb_at: float
    fraction_lost: int
    jitter: int
    rtt: float
    def __init__(
        self, counters: Counters, gated: bool, seq_start: int, ts_delta: int, rtx_seq: int
    ) -> None: ...
    def attach(
        self,
        transport: Transport,
        ssrc: int,
        rtx_ssrc: int,
        payload_type: int,
        rtx_payload_type: int,
        mid: bytes,
        mid_id: int,
        abs_send_time_id: int,
        audio_level_id: int,
        on_keyframe: Callable[[], None] | None = None,
    ) -> None: ...
    def note_sr(self, lsr: int, sent_at: float, /) -> None: ...
    def retransmit(self, seq: int, /) -> bool: ...
    def close(self) -> None: ...

def locked_call(fn: Callable[[bytes], bytes], arg: bytes, /) -> bytes: ...

class Pump:
    notify_fd: int
    running: int
    wakeups: int
    dropped_events: int
    pending: int
    def __init__(self) -> None: ...
    def register(self, transport: Transport, /) -> None: ...
    def unregister(self, transport: Transport, /) -> None: ...
    def dispatch(self) -> None: ...
    def stop(self) -> None: ...

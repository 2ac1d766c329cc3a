"""Cheap receive side of a synthetic participant: count RTP, never depacketize or decode.

:func:`hook_receiver` replaces one aiortc ``RTCRtpReceiver``'s ``_handle_rtp_packet`` (called
right after SRTP unprotect and RTP parse, before the jitter buffer) with a handler that

* updates :class:`RecvStats` (packets, bytes, frames by the marker bit, loss from sequence
  numbers, RFC 3550 jitter, freezes), and
* keeps the feedback a browser gives (receiver-report statistics, NACK, REMB) using aiortc's own
  objects, but skips depayloading, the jitter buffer and the decoder.

The receiver's private attributes are reached through ``fortrolig.media.aiortc_hooks`` (pinned
by tests/unit/media/test_aiortc_pins.py).

With a :class:`DecodeSample`, the receiver first runs aiortc's full path (jitter buffer and
decoder) until one frame was decoded from the track, checks it, then switches to the cheap path.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from fortrolig.media import aiortc_hooks as hooks

from .clip import Clip

FREEZE_GAP_S = 0.5
RTP_HEADER = 12
CLOCK_RATES = {"audio": 48_000, "video": 90_000}


@dataclass
class RecvStats:
    """What one participant received on one remote track."""

    kind: str
    owner: str
    clock_rate: int = 90_000
    media_pt: int | None = None  # the first payload type seen (RTX never comes first)
    packets: int = 0  # media packets
    recovered: int = 0  # RTX packets (retransmissions of missing packets)
    bytes: int = 0  # header (12 bytes) + payload + padding, media and RTX
    frames: int = 0  # video: marker bits; audio: packets
    first_at: float | None = None
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    freezes: int = 0
    freeze_s: float = 0.0
    jitter: float = 0.0  # RFC 3550, in RTP timestamp units
    _base: int | None = None
    _max: int = 0
    _cycles: int = 0
    _transit: float | None = None

    def __post_init__(self) -> None:
        self.clock_rate = CLOCK_RATES.get(self.kind, self.clock_rate)

    @property
    def expected(self) -> int:
        if self._base is None:
            return 0
        return self._cycles + self._max - self._base + 1

    @property
    def received(self) -> int:
        return self.packets + self.recovered

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        """Account one packet (the hot path: arithmetic only)."""
        pt = packet.payload_type
        self.bytes += RTP_HEADER + len(packet.payload) + packet.padding_size
        if self.media_pt is None:
            self.media_pt = pt
            self.first_at = now
        if pt != self.media_pt:
            self.recovered += 1
            return
        self.packets += 1
        seq = packet.sequence_number
        if self._base is None:
            self._base = self._max = seq
        elif (seq - self._max) & 0xFFFF < 0x8000:  # newer (or equal) in 16-bit order
            if seq < self._max:
                self._cycles += 1 << 16
            self._max = seq
        transit = now * self.clock_rate - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < self.clock_rate * 60:  # ignore timestamp wraps
                self.jitter += (d - self.jitter) / 16
        self._transit = transit
        if self.kind == "audio" or packet.marker:
            self.frames += 1
            last = self.last_frame_at
            if last is None:
                self.first_frame_at = now
            elif self.kind == "video" and now - last > FREEZE_GAP_S:
                self.freezes += 1
                self.freeze_s += now - last
            self.last_frame_at = now

    def close_window(self, end: float) -> None:
        """At the end of the measurement: a video stall still running then is a freeze too."""
        if self.kind == "video" and self.last_frame_at is not None:
            gap = end - self.last_frame_at
            if gap > FREEZE_GAP_S:
                self.freezes += 1
                self.freeze_s += gap
                self.last_frame_at = end


class NullJitterBuffer:
    """Takes every packet and never completes a frame: the receiver's decoder stays idle."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        return False, None


@dataclass
class DecodeSample:
    """The check of one decoded frame of a remote track."""

    kind: str
    done: bool = False
    ok: bool | None = None
    detail: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class ReferenceFrames:
    """Downscaled luma of every frame of the clip, to recognise a decoded remote frame."""

    def __init__(self, clip: Clip) -> None:
        self.width = clip.profile.width
        self.height = clip.profile.height
        self._lumas: list[np.ndarray] | None = None
        self._clip = clip

    def lumas(self) -> list[np.ndarray]:
        if self._lumas is None:
            decoder = av.CodecContext.create("libvpx", "r")
            out: list[np.ndarray] = []
            for data in self._clip.video:
                for frame in decoder.decode(av.Packet(data)):
                    out.append(_luma(frame))
            self._lumas = out
        return self._lumas

    def match(self, frame: av.VideoFrame) -> float:
        """Mean absolute luma difference to the closest clip frame (0 = identical)."""
        luma = _luma(frame)
        return min(float(np.abs(luma - ref).mean()) for ref in self.lumas())


def _luma(frame: av.VideoFrame) -> np.ndarray:
    arr = frame.to_ndarray(format="yuv420p")[: frame.height]
    return arr[::8, ::8].astype(np.float32)


MATCH_LIMIT = 6.0  # mean |ΔY| on 0..255: a lossy copy of the right frame is well below this


async def check_sample(
    track: MediaStreamTrack, sample: DecodeSample, reference: ReferenceFrames | None
) -> None:
    """Decode one frame from ``track`` (through aiortc) and say whether it is intact."""
    try:
        frame = await track.recv()
        if isinstance(frame, av.VideoFrame):
            sample.meta = {"width": frame.width, "height": frame.height}
            if reference is None:
                sample.ok, sample.detail = True, "decoded"
            elif (frame.width, frame.height) != (reference.width, reference.height):
                sample.ok = False
                sample.detail = f"decoded {frame.width}x{frame.height}, sent another size"
            else:
                diff = await asyncio.get_running_loop().run_in_executor(
                    None, reference.match, frame
                )
                sample.meta["luma_diff"] = round(diff, 2)
                sample.ok = diff < MATCH_LIMIT
                sample.detail = f"closest clip frame differs by {diff:.2f}/255"
        elif isinstance(frame, av.AudioFrame):
            pcm = frame.to_ndarray().astype(np.float64)
            rms = float(np.sqrt((pcm**2).mean())) if pcm.size else 0.0
            sample.meta = {"sample_rate": frame.sample_rate, "rms": round(rms, 1)}
            sample.ok = frame.sample_rate == 48_000 and rms > 300  # the clip's tone, not silence
            sample.detail = f"{frame.sample_rate} Hz, rms {rms:.0f}"
        else:
            sample.ok, sample.detail = False, f"unexpected {type(frame).__name__}"
    except Exception as exc:
        sample.ok, sample.detail = False, f"{type(exc).__name__}: {exc}"
    finally:
        sample.done = True


def hook_receiver(
    receiver: RTCRtpReceiver, stats: RecvStats, sample: DecodeSample | None = None
) -> None:
    """Count this receiver's packets and give browser-like feedback without decoding."""
    original = hooks.receiver_rtp_handler(receiver)
    cheap = hooks.feedback_only_rtp_handler(receiver)
    null = NullJitterBuffer()

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        stats.on_packet(packet, time.monotonic())
        if sample is not None and not sample.done:
            await original(packet, arrival_time_ms)
            if sample.done:  # the sample was taken: from now on nothing is reassembled
                hooks.set_receiver_jitter_buffer(receiver, null)
            return
        await cheap(packet, arrival_time_ms)

    if sample is None:
        hooks.set_receiver_jitter_buffer(receiver, null)
    hooks.set_receiver_rtp_handler(receiver, handle)

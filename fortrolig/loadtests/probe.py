"""Cheap receive side of a synthetic participant: count RTP, never depacketize or decode.

:func:`hook_receiver` replaces one aiortc ``RTCRtpReceiver``'s ``_handle_rtp_packet`` (called
right after SRTP unprotect and RTP parse, before the jitter buffer) with a handler that

* updates :class:`RecvStats` (packets, bytes, frames by the marker bit, loss from sequence
  numbers, RFC 3550 jitter, freezes), and
* keeps the feedback a browser gives (receiver-report statistics, NACK, REMB) using aiortc's own
  objects, but skips depayloading, the jitter buffer and the decoder.

The receiver's private attributes are those of aiortc 1.16 (pinned in pyproject.toml).

With a :class:`DecodeSample`, the receiver first runs aiortc's full path (jitter buffer and
decoder) until one frame was decoded from the track, checks it, then switches to the cheap path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci, unwrap_rtx

from .clip import Clip

FREEZE_GAP_S = 0.5
RTP_HEADER = 12
CLOCK_RATES = {"audio": 48_000, "video": 90_000}
_P = "_RTCRtpReceiver__"


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
    original: Callable[[RtpPacket, int], Awaitable[None]] = receiver._handle_rtp_packet
    cheap = _cheap_feedback(receiver)
    null = NullJitterBuffer()

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        stats.on_packet(packet, time.monotonic())
        if sample is not None and not sample.done:
            await original(packet, arrival_time_ms)
            if sample.done:  # the sample was taken: from now on nothing is reassembled
                setattr(receiver, _P + "jitter_buffer", null)
            return
        await cheap(packet, arrival_time_ms)

    if sample is None:
        setattr(receiver, _P + "jitter_buffer", null)
    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def _cheap_feedback(receiver: RTCRtpReceiver) -> Callable[[RtpPacket, int], Awaitable[None]]:
    """aiortc's ``_handle_rtp_packet`` without depayloading, jitter buffer and decoding."""
    r: Any = receiver

    async def feedback(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not r._enabled:
            return
        estimator = getattr(r, _P + "remote_bitrate_estimator")
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = getattr(r, _P + "rtcp_ssrc")
            if rtcp_ssrc is not None and remb is not None:
                await r._send_rtcp(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb)
                    )
                )
        codecs = getattr(r, _P + "codecs")
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams = getattr(r, _P + "remote_streams")
        if packet.ssrc not in streams:
            streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        streams[packet.ssrc].add(packet)  # receiver reports (loss, jitter) for the SFU
        if is_rtx(codec):
            original_ssrc = getattr(r, _P + "rtx_ssrc").get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        nack = getattr(r, _P + "nack_generator")
        if nack is not None and nack.add(packet):
            await r._send_rtcp_nack(packet.ssrc, sorted(nack.missing))

    return feedback

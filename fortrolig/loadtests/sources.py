"""Synthetic media sources and sinks for programmatic participants.

``PatternVideoTrack`` produces frames whose colour encodes the participant (so a receiver can
check a decoded sample really came from the right publisher); aiortc encodes them, which keeps
real keyframe-on-PLI behaviour. ``FrameCounter`` consumes a remote track and records arrival
times and a decoded sample.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av.frame import Frame

VIDEO_CLOCK = 90_000


class PatternVideoTrack(MediaStreamTrack):
    """A video track of solid frames in one YUV colour, at a fixed frame rate."""

    kind = "video"

    def __init__(self, y: int, u: int, v: int, width: int = 320, height: int = 240, fps: int = 30):
        super().__init__()
        self._planes = (y, u, v)
        self._size = (width, height)
        self._fps = fps
        self._pts = 0
        self._start: float | None = None
        self.frames_sent = 0

    def fresh(self) -> PatternVideoTrack:
        """A new track like this one, for a new peer connection (see Participant.resume)."""
        w, h = self._size
        return PatternVideoTrack(*self._planes, w, h, self._fps)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += VIDEO_CLOCK // self._fps
            wait = self._start + self._pts / VIDEO_CLOCK - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        w, h = self._size
        y, u, v = self._planes
        data = np.empty((h * 3 // 2, w), dtype=np.uint8)
        data[:h] = y
        data[h : h + h // 4] = u
        data[h + h // 4 :] = v
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """aiortc's 20 ms audio frames (silence), counted."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_sent = 0

    def fresh(self) -> ToneAudioTrack:
        """A new track like this one, for a new peer connection (see Participant.resume)."""
        return ToneAudioTrack()

    async def recv(self) -> Frame:
        frame = await super().recv()
        self.frames_sent += 1
        return frame


@dataclass
class FrameCounter:
    """Counts decoded frames of one remote track; keeps the mean YUV of the latest video frame."""

    kind: str
    frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    sample_yuv: tuple[float, float, float] | None = None
    arrivals: list[float] = field(default_factory=list)

    async def consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.frames += 1
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now
                if len(self.arrivals) < 10_000:
                    self.arrivals.append(now)
                if isinstance(frame, av.VideoFrame) and self.frames % 10 == 1:
                    self.sample_yuv = _mean_yuv(frame)
        except MediaStreamError:
            return


def _mean_yuv(frame: av.VideoFrame) -> tuple[float, float, float]:
    arr = frame.to_ndarray(format="yuv420p")
    h = frame.height
    y = float(arr[:h].mean())
    u = float(arr[h : h + h // 4].mean())
    v = float(arr[h + h // 4 :].mean())
    return (y, u, v)


class SyncClock:
    """A start time shared by a participant's audio and video: both sync marks of second k
    are made for the same instant ``start + k``."""

    def __init__(self) -> None:
        self.start: float | None = None

    def origin(self) -> float:
        if self.start is None:
            self.start = time.monotonic()
        return self.start

    async def wait_until(self, seconds: float) -> None:
        wait = self.origin() + seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


class FlashVideoTrack(MediaStreamTrack):
    """Dark frames with one white frame at the start of every second (a sync mark)."""

    kind = "video"

    def __init__(self, clock: SyncClock, width: int = 320, height: int = 240, fps: int = 30):
        super().__init__()
        self._clock = clock
        self._size = (width, height)
        self._fps = fps
        self._index = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.wait_until(self._index / self._fps)
        w, h = self._size
        data = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        data[:h] = 235 if self._index % self._fps == 0 else 16
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = self._index * (VIDEO_CLOCK // self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._index += 1
        return frame


class BeepAudioTrack(MediaStreamTrack):
    """Silence with a 100 ms 1 kHz beep at the start of every second (a sync mark)."""

    kind = "audio"
    RATE = 48_000
    SAMPLES = 960  # 20 ms
    BEEP_FRAMES = 5

    def __init__(self, clock: SyncClock) -> None:
        super().__init__()
        self._clock = clock
        self._index = 0
        t = np.arange(self.SAMPLES) / self.RATE
        self._tone = (np.sin(2 * np.pi * 1000 * t) * 20000).astype(np.int16)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.wait_until(self._index * self.SAMPLES / self.RATE)
        per_second = self.RATE // self.SAMPLES
        beep = self._index % per_second < self.BEEP_FRAMES
        samples = self._tone if beep else np.zeros(self.SAMPLES, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._index * self.SAMPLES
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._index += 1
        return frame

"""A seeded synthetic clip, encoded once with PyAV and replayed as pre-encoded packets.

Video: VP8 640x360@30, ~1 Mbit/s, a keyframe every second (a panning texture with noise and a
moving box, so the encoder really spends the bitrate). Audio: Opus 48 kbit/s, 20 ms packets.
Replay returns ``av.Packet``s, which aiortc's senders packetize without encoding, at real-time
pace with steadily increasing pts (the clip loops, the pts never go back).

Each video pts gets a small seeded offset (0..45 ticks of 90 kHz, < 0.5 ms): frame timestamps
then form a non-periodic sequence, so a subscriber's timestamps can be matched to the
publisher's without ambiguity even through a server that re-encodes (see ``latency``).
"""

from __future__ import annotations

import asyncio
import fractions
import pickle
import random
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
FPS = 30
WIDTH, HEIGHT = 640, 360
VIDEO_BITRATE = 1_000_000
AUDIO_BITRATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
PTS_JITTER_MAX = 45
JITTER_PERIOD = 1009  # prime, so the jitter pattern does not line up with the clip loop


@dataclass(frozen=True)
class Clip:
    """Encoded packets of both tracks plus the per-frame pts offsets of the video."""

    video: list[bytes]
    audio: list[bytes]
    pts_jitter: list[int]
    seconds: float

    @property
    def video_kbps(self) -> float:
        return sum(len(p) for p in self.video) * 8 / self.seconds / 1000

    @property
    def audio_kbps(self) -> float:
        return sum(len(p) for p in self.audio) * 8 / (len(self.audio) * 0.02) / 1000

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def load(path: str) -> Clip:
        with open(path, "rb") as f:
            clip = pickle.load(f)
        if not isinstance(clip, Clip):
            raise TypeError(f"{path} does not hold a Clip")
        return clip


def _video_frames(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """YUV420p planes (stacked as one array) of a panning, noisy texture with a moving box."""
    block = 8
    small = rng.integers(0, 256, (HEIGHT // block + 1, (WIDTH + 2 * count) // block + 2))
    texture = np.kron(small.astype(np.uint8), np.ones((block, block), dtype=np.uint8))
    noise = rng.integers(0, 24, (HEIGHT, WIDTH), dtype=np.uint8)
    u = np.full((HEIGHT // 4, WIDTH), 128, dtype=np.uint8)
    frames = []
    for i in range(count):
        y = texture[:HEIGHT, 2 * i : 2 * i + WIDTH] // 2 + noise // 2
        y = y + np.roll(noise, i * 5, axis=1) // 4
        x = (i * 7) % (WIDTH - 80)
        y[100:180, x : x + 80] = 255
        v = np.full((HEIGHT // 4, WIDTH), (i * 3) % 256, dtype=np.uint8)
        frames.append(np.concatenate([y.astype(np.uint8), u, v]))
    return frames


def _encode_video(seconds: int, rng: np.random.Generator) -> list[bytes]:
    count = seconds * FPS
    cc = av.CodecContext.create("libvpx", "w")
    cc.width = WIDTH
    cc.height = HEIGHT
    cc.pix_fmt = "yuv420p"
    cc.bit_rate = VIDEO_BITRATE
    cc.time_base = fractions.Fraction(1, FPS)
    cc.framerate = fractions.Fraction(FPS, 1)
    cc.gop_size = FPS
    rate = str(VIDEO_BITRATE)
    cc.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": rate,
        "maxrate": rate,
        "bufsize": rate,
        "undershoot-pct": "100",
        "overshoot-pct": "15",
    }
    packets: list[bytes] = []
    for i, data in enumerate(_video_frames(count, rng)):
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = i
        if i % FPS == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    if len(packets) != count:
        raise RuntimeError(f"VP8 encoder returned {len(packets)} packets for {count} frames")
    return packets


def _encode_audio(seconds: int, rng: np.random.Generator) -> list[bytes]:
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = AUDIO_RATE
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = AUDIO_BITRATE
    cc.time_base = fractions.Fraction(1, AUDIO_RATE)
    cc.options = {"vbr": "off"}
    count = seconds * AUDIO_RATE // AUDIO_SAMPLES
    packets: list[bytes] = []
    t = np.arange(AUDIO_SAMPLES) / AUDIO_RATE
    for i in range(count):
        phase = 2 * np.pi * (220 + 20 * (i % 10)) * (t + i * AUDIO_SAMPLES / AUDIO_RATE)
        tone = 6000 * np.sin(phase)
        mono = (tone + rng.normal(0, 800, AUDIO_SAMPLES)).astype(np.int16)
        stereo = np.repeat(mono, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        packets.extend(bytes(p) for p in cc.encode(frame))
    packets.extend(bytes(p) for p in cc.encode(None))
    return packets[:count]


def encode_clip(seconds: int = 10, seed: int = 7) -> Clip:
    """Encode the seeded clip (``seconds`` must be whole: the clip loops on a keyframe)."""
    rng = np.random.default_rng(seed)
    video = _encode_video(seconds, rng)
    audio = _encode_audio(seconds, rng)
    jitter_rng = random.Random(seed)
    jitter = [jitter_rng.randint(0, PTS_JITTER_MAX) for _ in range(JITTER_PERIOD)]
    return Clip(video=video, audio=audio, pts_jitter=jitter, seconds=float(seconds))


class ReplayTrack(MediaStreamTrack):
    """Returns the clip's pre-encoded packets as ``av.Packet`` at real-time pace, looping."""

    def __init__(self, kind: str, clip: Clip) -> None:
        super().__init__()
        self.kind = kind
        if kind == "video":
            self._packets = clip.video
            self._step = VIDEO_CLOCK // FPS
            self._jitter = clip.pts_jitter
            self._period = 1.0 / FPS
            self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        else:
            self._packets = clip.audio
            self._step = AUDIO_SAMPLES
            self._jitter = [0]
            self._period = AUDIO_SAMPLES / AUDIO_RATE
            self._time_base = fractions.Fraction(1, AUDIO_RATE)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        wait = self._start + self._index * self._period - now
        if wait > 0:
            await asyncio.sleep(wait)
        i = self._index
        self._index += 1
        packet = av.Packet(self._packets[i % len(self._packets)])
        packet.pts = i * self._step + self._jitter[i % len(self._jitter)]
        packet.time_base = self._time_base
        return packet

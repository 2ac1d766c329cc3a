"""A seeded synthetic clip, encoded once with PyAV and replayed as pre-encoded packets.

Video: VP8 at the profile's size, frame rate and bitrate (default 640x360@30, ~1 Mbit/s), a
keyframe every second (a panning texture with noise and a moving box, so the encoder really
spends the bitrate). Audio: Opus (default 48 kbit/s), 20 ms packets. Replay returns
``av.Packet``s, which aiortc's senders packetize without encoding, at real-time pace with steadily
increasing pts (the clip loops, the pts never go back).

Each video pts gets a small seeded offset (0..45 ticks of 90 kHz, < 0.5 ms): frame timestamps
then form a non-periodic sequence, so a subscriber's timestamps can be matched to the
publisher's without ambiguity even through a server that re-encodes (see ``bench.clients``).

A clip is cached as a plain length-prefixed file (no pickle: a cache directory is not trusted
to hold code) named after its profile, so every worker process and every later run reuses it.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import random
import struct
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
PTS_JITTER_MAX = 45
JITTER_PERIOD = 1009  # prime, so the jitter pattern does not line up with the clip loop
MAGIC = b"FORTROLIG-CLIP-1\n"

# The bench's historical names (bench.clip re-exports them).
FPS = 30
WIDTH, HEIGHT = 640, 360
VIDEO_BITRATE = 1_000_000
AUDIO_BITRATE = 48_000


@dataclass(frozen=True)
class MediaProfile:
    """What a synthetic participant sends."""

    width: int = WIDTH
    height: int = HEIGHT
    fps: int = FPS
    video_bitrate: int = VIDEO_BITRATE
    audio_bitrate: int = AUDIO_BITRATE
    seconds: int = 10
    seed: int = 7

    def cache_name(self) -> str:
        return (
            f"clip-{self.width}x{self.height}-{self.fps}fps-{self.video_bitrate}bps-"
            f"{self.audio_bitrate}bps-{self.seconds}s-seed{self.seed}.bin"
        )


@dataclass(frozen=True)
class Clip:
    """Encoded packets of both tracks plus the per-frame pts offsets of the video."""

    video: list[bytes]
    audio: list[bytes]
    pts_jitter: list[int]
    seconds: float
    profile: MediaProfile = field(default_factory=MediaProfile)

    @property
    def video_kbps(self) -> float:
        return sum(len(p) for p in self.video) * 8 / self.seconds / 1000

    @property
    def audio_kbps(self) -> float:
        return sum(len(p) for p in self.audio) * 8 / (len(self.audio) * 0.02) / 1000

    @property
    def keyframes(self) -> list[int]:
        """Indices of the VP8 keyframes (bit 0 of the first payload byte is 0 on a keyframe)."""
        return [i for i, p in enumerate(self.video) if p and not p[0] & 0x01]

    def save(self, path: str | Path) -> None:
        """Write atomically (a concurrent reader never sees half a file)."""
        header = json.dumps(
            {
                "profile": asdict(self.profile),
                "seconds": self.seconds,
                "video": len(self.video),
                "audio": len(self.audio),
                "pts_jitter": self.pts_jitter,
            }
        ).encode()
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".clip-")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(struct.pack(">I", len(header)) + header)
            for packet in (*self.video, *self.audio):
                f.write(struct.pack(">I", len(packet)) + packet)
        os.replace(tmp, target)

    @staticmethod
    def load(path: str | Path) -> Clip:
        data = Path(path).read_bytes()
        if not data.startswith(MAGIC):
            raise ValueError(f"{path} is not a clip file")
        pos = len(MAGIC)

        def chunk() -> bytes:
            nonlocal pos
            if pos + 4 > len(data):
                raise ValueError(f"{path} is truncated")
            (n,) = struct.unpack_from(">I", data, pos)
            pos += 4
            if pos + n > len(data):
                raise ValueError(f"{path} is truncated")
            out = data[pos : pos + n]
            pos += n
            return out

        header: dict[str, Any] = json.loads(chunk())
        video = [chunk() for _ in range(int(header["video"]))]
        audio = [chunk() for _ in range(int(header["audio"]))]
        return Clip(
            video=video,
            audio=audio,
            pts_jitter=[int(x) for x in header["pts_jitter"]],
            seconds=float(header["seconds"]),
            profile=MediaProfile(**header["profile"]),
        )


def _video_frames(p: MediaProfile, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """YUV420p planes (stacked as one array) of a panning, noisy texture with a moving box."""
    width, height = p.width, p.height
    block = 8
    small = rng.integers(0, 256, (height // block + 1, (width + 2 * count) // block + 2))
    texture = np.kron(small.astype(np.uint8), np.ones((block, block), dtype=np.uint8))
    noise = rng.integers(0, 24, (height, width), dtype=np.uint8)
    u = np.full((height // 4, width), 128, dtype=np.uint8)
    box = max(8, min(80, width // 8, height // 4))
    frames = []
    for i in range(count):
        y = texture[:height, 2 * i : 2 * i + width] // 2 + noise // 2
        y = y + np.roll(noise, i * 5, axis=1) // 4
        x = (i * 7) % max(1, width - box)
        top = height // 3
        y[top : top + box, x : x + box] = 255
        v = np.full((height // 4, width), (i * 3) % 256, dtype=np.uint8)
        frames.append(np.concatenate([y.astype(np.uint8), u, v]))
    return frames


def _encode_video(p: MediaProfile, rng: np.random.Generator) -> list[bytes]:
    count = p.seconds * p.fps
    cc = av.CodecContext.create("libvpx", "w")
    cc.width = p.width
    cc.height = p.height
    cc.pix_fmt = "yuv420p"
    cc.bit_rate = p.video_bitrate
    cc.time_base = fractions.Fraction(1, p.fps)
    cc.framerate = fractions.Fraction(p.fps, 1)
    cc.gop_size = p.fps
    rate = str(p.video_bitrate)
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
    for i, data in enumerate(_video_frames(p, count, rng)):
        frame = av.VideoFrame.from_ndarray(data, format="yuv420p")
        frame.pts = i
        if i % p.fps == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(pk) for pk in cc.encode(frame))
    packets.extend(bytes(pk) for pk in cc.encode(None))
    if len(packets) != count:
        raise RuntimeError(f"VP8 encoder returned {len(packets)} packets for {count} frames")
    return packets


def _encode_audio(p: MediaProfile, rng: np.random.Generator) -> list[bytes]:
    cc = av.CodecContext.create("libopus", "w")
    cc.sample_rate = AUDIO_RATE
    cc.layout = "stereo"
    cc.format = "s16"
    cc.bit_rate = p.audio_bitrate
    cc.time_base = fractions.Fraction(1, AUDIO_RATE)
    cc.options = {"vbr": "off"}
    count = p.seconds * AUDIO_RATE // AUDIO_SAMPLES
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
        packets.extend(bytes(pk) for pk in cc.encode(frame))
    packets.extend(bytes(pk) for pk in cc.encode(None))
    return packets[:count]


def encode_clip(profile: MediaProfile | None = None) -> Clip:
    """Encode the seeded clip (whole seconds: the clip loops on a keyframe)."""
    p = profile or MediaProfile()
    rng = np.random.default_rng(p.seed)
    video = _encode_video(p, rng)
    audio = _encode_audio(p, rng)
    jitter_rng = random.Random(p.seed)
    jitter = [jitter_rng.randint(0, PTS_JITTER_MAX) for _ in range(JITTER_PERIOD)]
    return Clip(video=video, audio=audio, pts_jitter=jitter, seconds=float(p.seconds), profile=p)


def cached_clip(profile: MediaProfile, cache_dir: Path) -> tuple[Path, Clip, bool]:
    """The clip of ``profile`` from ``cache_dir``, encoded and stored on first use.

    Returns (path, clip, whether it was encoded now).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / profile.cache_name()
    if path.exists():
        try:
            clip = Clip.load(path)
            if clip.profile == profile:
                return path, clip, False
        except (ValueError, KeyError, TypeError):
            pass  # a damaged or foreign file: encode again
    clip = encode_clip(profile)
    clip.save(path)
    return path, clip, True


class ReplayTrack(MediaStreamTrack):
    """Returns the clip's pre-encoded packets as ``av.Packet`` at real-time pace, looping.

    :meth:`request_keyframe` makes the next video packet the clip's next keyframe (as a real
    encoder answers a PLI); whoever owns the sender wires the sender's keyframe requests to it.
    """

    def __init__(self, kind: str, clip: Clip) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        fps = clip.profile.fps
        if kind == "video":
            self._packets = clip.video
            self._step = VIDEO_CLOCK // fps
            self._jitter = clip.pts_jitter
            self._period = 1.0 / fps
            self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self._keyframes = clip.keyframes or [0]
        else:
            self._packets = clip.audio
            self._step = AUDIO_SAMPLES
            self._jitter = [0]
            self._period = AUDIO_SAMPLES / AUDIO_RATE
            self._time_base = fractions.Fraction(1, AUDIO_RATE)
            self._keyframes = [0]
        self._index = 0  # packets emitted (drives pts and pacing)
        self._pos = 0  # position in the clip
        self._keyframe_wanted = False
        self._start: float | None = None
        self.keyframes_forced = 0

    def fresh(self) -> ReplayTrack:
        """A new replay of the same clip, for a new peer connection (see Participant.resume)."""
        return ReplayTrack(self.kind, self._clip)

    def request_keyframe(self) -> None:
        if self.kind == "video":
            self._keyframe_wanted = True

    def _jump_to_keyframe(self) -> None:
        n = len(self._packets)
        here = self._pos % n
        nxt = next((k for k in self._keyframes if k >= here), self._keyframes[0] + n)
        self._pos += nxt - here
        self.keyframes_forced += 1

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        wait = self._start + self._index * self._period - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self._jump_to_keyframe()
        i = self._index
        self._index += 1
        pos = self._pos
        self._pos += 1
        packet = av.Packet(self._packets[pos % len(self._packets)])
        packet.pts = i * self._step + self._jitter[i % len(self._jitter)]
        packet.time_base = self._time_base
        return packet

"""The bench's clip: the load generator's seeded synthetic clip (see fortrolig.loadtests.clip).

Kept as a module of its own so the bench's imports stay as they were; the code lives in
``fortrolig.loadtests.clip``, shared with ``fortrolig-load``.
"""

from __future__ import annotations

from fortrolig.loadtests.clip import (
    AUDIO_BITRATE,
    AUDIO_RATE,
    AUDIO_SAMPLES,
    FPS,
    HEIGHT,
    JITTER_PERIOD,
    PTS_JITTER_MAX,
    VIDEO_BITRATE,
    VIDEO_CLOCK,
    WIDTH,
    Clip,
    MediaProfile,
    ReplayTrack,
    encode_clip,
)

__all__ = [
    "AUDIO_BITRATE",
    "AUDIO_RATE",
    "AUDIO_SAMPLES",
    "FPS",
    "HEIGHT",
    "JITTER_PERIOD",
    "PTS_JITTER_MAX",
    "VIDEO_BITRATE",
    "VIDEO_CLOCK",
    "WIDTH",
    "Clip",
    "MediaProfile",
    "ReplayTrack",
    "encode_clip",
]

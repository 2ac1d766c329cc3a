"""WebM muxing of already-encoded VP8 and Opus frames with PyAV, opening no codec at all.

The VP8 stream is made with ``add_mux_stream`` (codec parameters only, no codec context). The
Opus stream needs its OpusHead as CodecPrivate, which only a codec context carries into the
file, so it is copied with ``add_stream_from_template`` from a template stream that is never
started (PyAV marks a template-made context as initialised and never opens it); the research
note found that ``add_stream("opus")`` opens a libopus encoder at the first mux and replaces
the OpusHead. Timestamps are milliseconds (Matroska's time base), strictly increasing per
stream, and the first video frame of every stream is a keyframe (the caller guarantees it).
"""

from __future__ import annotations

import fractions
import io
from dataclasses import dataclass
from typing import Any, BinaryIO

import av

from .depacketize import opus_head

MS = fractions.Fraction(1, 1000)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One track of a WebM file."""

    track_id: str
    kind: str  # "audio" | "video"
    width: int = 0
    height: int = 0


def _opus_template() -> Any:
    """An Opus stream to copy parameters from; its container is never written to."""
    scratch = av.open(io.BytesIO(), "w", format="webm")
    template = scratch.add_stream("libopus", rate=48000)
    template.codec_context.layout = "stereo"
    return scratch, template


class WebmWriter:
    """Writes frames of a fixed set of tracks into one WebM file (``out``)."""

    def __init__(self, out: io.RawIOBase | BinaryIO, streams: list[StreamSpec]) -> None:
        self._container: Any = av.open(out, "w", format="webm")
        self._streams: dict[str, Any] = {}
        self._last: dict[str, int] = {}
        scratch, template = _opus_template()
        try:
            for spec in streams:
                self._streams[spec.track_id] = self._add(spec, template)
        finally:
            scratch.close()
        self.frames = 0
        self.duration_ms = 0

    def _add(self, spec: StreamSpec, template: Any) -> Any:
        if spec.kind == "video":
            stream = self._container.add_mux_stream("vp8", width=spec.width, height=spec.height)
        else:
            stream = self._container.add_stream_from_template(template)
            stream.codec_context.extradata = opus_head()
        stream.metadata["title"] = spec.track_id
        return stream

    def write(self, track_id: str, pts_ms: int, data: bytes, keyframe: bool) -> int:
        """Mux one frame; returns the timestamp used (bumped to stay strictly increasing)."""
        stream = self._streams[track_id]
        last = self._last.get(track_id)
        if last is not None and pts_ms <= last:
            pts_ms = last + 1
        self._last[track_id] = pts_ms
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = MS
        packet.pts = packet.dts = pts_ms
        packet.is_keyframe = keyframe
        self._container.mux(packet)
        self.frames += 1
        self.duration_ms = max(self.duration_ms, pts_ms)
        return pts_ms

    def codecs_opened(self) -> int:
        """Codec contexts of this file that are open (must stay 0: nothing is transcoded)."""
        return sum(
            1
            for s in self._streams.values()
            if s.codec_context is not None and s.codec_context.is_open
        )

    def close(self) -> None:
        """Write the trailer (cues, duration); idempotent."""
        if self._container is not None:
            self._container.close()
            self._container = None

"""VP8 (RFC 7741) and Opus (RFC 7587) depacketisation: RTP payloads in order → whole frames.

Nothing is decoded: a VP8 frame is the concatenation of its packets' payloads after the payload
descriptor, and the only bytes read inside it are the 3-byte frame tag (P bit: keyframe or
not) and, on a keyframe, the start code and the 14-bit width and height (RFC 6386 9.1). An Opus
packet is one frame as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

VP8_START_CODE = b"\x9d\x01\x2a"


class MalformedPayload(ValueError):
    """An RTP payload that does not parse as its codec's payload format."""


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The parts of a VP8 payload descriptor a depacketiser needs."""

    start: bool  # S bit with partition index 0: the first packet of a frame
    offset: int  # where the VP8 payload begins


def parse_vp8_descriptor(payload: bytes) -> Vp8Descriptor:
    """Parse the descriptor (X/I/L/T/K bits; X=0 is a one-byte descriptor)."""
    if not payload:
        raise MalformedPayload("empty VP8 payload")
    first = payload[0]
    i = 1
    if first & 0x80:  # X: extended control bits follow
        if len(payload) < 2:
            raise MalformedPayload("VP8 descriptor truncated")
        ext = payload[1]
        i = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits (M bit)
            if len(payload) <= i:
                raise MalformedPayload("VP8 picture id truncated")
            i += 2 if payload[i] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            i += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            i += 1
    if len(payload) <= i:
        raise MalformedPayload("VP8 packet without payload")
    return Vp8Descriptor(start=bool(first & 0x10) and (first & 0x07) == 0, offset=i)


@dataclass(frozen=True, slots=True)
class Vp8Frame:
    """One whole VP8 frame."""

    timestamp: int  # RTP timestamp (90 kHz)
    data: bytes
    keyframe: bool
    width: int = 0  # from a keyframe's header, else 0
    height: int = 0


def vp8_frame_info(data: bytes) -> tuple[bool, int, int]:
    """(keyframe, width, height) of a VP8 frame from its frame tag and keyframe header."""
    if len(data) < 3:
        raise MalformedPayload("VP8 frame shorter than its frame tag")
    if data[0] & 0x01:  # P bit: 1 = interframe
        return False, 0, 0
    if len(data) < 10 or data[3:6] != VP8_START_CODE:
        raise MalformedPayload("VP8 keyframe without its start code")
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return True, width, height


class Vp8Depacketizer:
    """Assembles frames from in-order packets of one track.

    A frame ends when the marker bit is set or a packet with another timestamp arrives (the
    marker "may be lost", as Janus notes). A frame with a gap inside, or without its first
    packet, is dropped; the caller then waits for a keyframe.
    """

    def __init__(self) -> None:
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._intact = False
        self.dropped = 0

    def push(self, timestamp: int, marker: bool, payload: bytes, after_gap: bool) -> list[Vp8Frame]:
        """One packet; returns the frames it completed (zero, one, or two)."""
        out: list[Vp8Frame] = []
        if after_gap:
            self._drop()
        if self._ts is not None and timestamp != self._ts:
            out.extend(self._finish())
        try:
            descriptor = parse_vp8_descriptor(payload)
        except MalformedPayload:
            self._drop()
            return out
        if self._ts is None:
            self._ts = timestamp
            self._intact = descriptor.start
        self._parts.append(payload[descriptor.offset :])
        if marker:
            out.extend(self._finish())
        return out

    def _drop(self) -> None:
        if self._parts:
            self.dropped += 1
        self._ts = None
        self._parts = []
        self._intact = False

    def _finish(self) -> list[Vp8Frame]:
        ts, parts, intact = self._ts, self._parts, self._intact
        self._ts, self._parts, self._intact = None, [], False
        if ts is None or not parts:
            return []
        if not intact:
            self.dropped += 1
            return []
        data = b"".join(parts)
        try:
            keyframe, width, height = vp8_frame_info(data)
        except MalformedPayload:
            self.dropped += 1
            return []
        return [Vp8Frame(ts, data, keyframe, width, height)]


def opus_head(channels: int = 2, sample_rate: int = 48000) -> bytes:
    """The OpusHead (RFC 7845 5.1) of a WebM Opus track: pre-skip 0, because browser Opus over
    RTP starts without the encoder's look-ahead to trim (as Janus writes it)."""
    return (
        b"OpusHead"
        + bytes([1, channels])
        + (0).to_bytes(2, "little")
        + sample_rate.to_bytes(4, "little")
        + (0).to_bytes(2, "little")
        + bytes([0])
    )

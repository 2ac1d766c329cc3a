"""The SFU's public subscriber interface: how something other than a browser leg (the recorder)
receives a room's media.

A subscriber is told when a published track appears or goes away and gets every RTP packet of
it, already unprotected and with the publisher's own SSRC, sequence number (RTX unwrapped) and
timestamp: the same fan-out that feeds the forwarding legs, with no decoding anywhere. Through
the :class:`TrackSource` it was given it may ask the publisher for a keyframe (the same
rate-limited PLI path a browser leg's request takes) and read the publisher's latest RTCP sender
report (for lip sync across tracks).

A forwarding :class:`~fortrolig.media.forwarding.Leg` is the native specialisation of the same
idea: it is added when a track appears, removed when it goes, asks for keyframes through the
same method and reads the same sender report; its per-packet work stays in C. A Python
subscriber costs rooms without one nothing but one pointer test per packet (the native track
delivers packets to Python only while a subscriber is attached: ``Track.set_tap``).

Callbacks run on the SFU's event loop; they must be quick and must not raise (an exception is
counted in ``handler_errors`` and logged, and the packet is lost to that subscriber only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One RTP packet of a published track, as the publisher sent it (after SRTP)."""

    ssrc: int
    sequence_number: int
    timestamp: int
    payload_type: int
    marker: bool
    payload: bytes
    arrival: float
    """``time.monotonic()`` when Python received it."""

    @classmethod
    def parse(cls, data: bytes, arrival: float) -> MediaPacket:
        """Parse the plain 12-byte-header packet the native track hands over (no CSRC, no
        extension, no padding: see ``track_tap`` in native/track.c)."""
        _version, second, seq, ts, ssrc = _HEADER.unpack_from(data)
        return cls(ssrc, seq, ts, second & 0x7F, bool(second & 0x80), data[12:], arrival)


@dataclass(frozen=True, slots=True)
class ClockMapping:
    """A publisher's sender report: RTP timestamp ``rtp`` was NTP time ``ntp`` (64-bit fixed)."""

    ntp: int
    rtp: int

    @property
    def ntp_seconds(self) -> float:
        """The NTP time as seconds since 1900."""
        return self.ntp / (1 << 32)


class TrackSource(Protocol):
    """What a subscriber may ask of one published track."""

    @property
    def track_id(self) -> str:
        """Unique within the room: ``<participant id>-audio``, ``-video`` or ``-screen``."""
        ...

    @property
    def participant_id(self) -> str: ...

    @property
    def kind(self) -> str:
        """``"audio"`` or ``"video"``."""
        ...

    @property
    def screen(self) -> bool:
        """A shared screen (track id ``<participant id>-screen``), not the camera."""
        ...

    @property
    def mime_type(self) -> str:
        """The negotiated codec, e.g. ``"video/VP8"`` (never transcoded)."""
        ...

    @property
    def clock_rate(self) -> int: ...

    def clock_mapping(self) -> ClockMapping | None:
        """The publisher's latest sender report for this track (None until one arrived)."""
        ...

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (PLI; rate-limited like every leg's request)."""
        ...


class Subscriber(Protocol):
    """A consumer of a room's published tracks (the recorder)."""

    def track_added(self, source: TrackSource) -> None:
        """A track is published in the room (also called once per existing track on attach)."""
        ...

    def track_removed(self, track_id: str) -> None:
        """The track's publisher left (or the room closed); no more packets of it follow."""
        ...

    def rtp(self, track_id: str, packet: MediaPacket) -> None:
        """One packet of a track, in arrival order (not reordered: that is the subscriber's
        job; packets the data plane could not queue are simply missing)."""
        ...


@dataclass(frozen=True, slots=True)
class RecordedTrack:
    """One track in a recorded file."""

    track_id: str
    participant_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class RecordedPart:
    """One finished, encrypted file of a recording (in the recording directory)."""

    index: int
    name: str
    """The file's name in the recording directory."""
    starts_at_s: float
    """Where the file starts on the recording's timeline."""
    duration_s: float
    tracks: tuple[RecordedTrack, ...]
    frames: int


class RecordingSubscriber(Subscriber, Protocol):
    """A subscriber that records (the recorder): told of consent, closed at the end."""

    def include(self, participant_id: str) -> None:
        """``participant_id`` consented: their tracks are recorded from now on."""
        ...

    def close(self) -> list[RecordedPart]:
        """Finish every file; returns them (idempotent)."""
        ...


class RecorderFactory(Protocol):
    """Makes the recorder of one recording (the composition root passes one to the SFU)."""

    def __call__(
        self, recording_id: str, key: bytes, participants: tuple[str, ...]
    ) -> RecordingSubscriber:
        """A recorder writing files encrypted under ``key`` that records only the tracks of
        ``participants`` (until :meth:`RecordingSubscriber.include` adds more)."""
        ...

"""The recorder: a subscriber of a room (media/subscriber.py) that writes encrypted WebM files.

Per track, packets go through a small jitter buffer, then the depacketiser (VP8 frames, Opus
packets), then a clock mapping to a common timeline, then the WebM muxer, whose bytes go
through the streaming AEAD straight to the sink: nothing is decoded, nothing unencrypted is
written anywhere.

**Timeline.** Each publisher's sender reports map its tracks' RTP timestamps to its own NTP
clock, which is common to its audio and video (lip sync). Publishers' clocks differ, so each
participant gets one offset from its NTP clock to this process's monotonic clock: the smallest
``arrival − NTP time`` seen before the file starts (the least-delayed packet). A track without
a sender report by then is mapped by its own arrival times instead. The mapping is frozen when
a file starts, and later frames advance by their RTP timestamp difference, so timestamps never
jump and wrap safely.

**Files ("parts").** WebM declares its tracks in the header, so tracks cannot be added to a
file that is being written. A recording is therefore a sequence of parts, each with a fixed set
of tracks; a part starts when every known track is ready (video: a keyframe seen, so its size
is known; both: a sender report, or ``start_wait_s`` passed) and a track that becomes ready
later (a participant who joined late) closes the part and starts the next one with all tracks.
Each part's timeline starts at 0; its start on the recording's timeline is in the manifest. A
track whose publisher leaves just ends in the part. A resolution change stays in the part (the
VP8 keyframe carries its size; decoders follow it).

**Consent.** Only the tracks of participants who consented are recorded
(``participants``, grown by :meth:`Recorder.include`): a participant who joins while the
recording runs is left out until they accept, and their tracks then go into a new part like a
late joiner's.

**Loss.** Audio gaps are skipped (the timestamps jump, as in Janus). A video gap drops frames
until the next keyframe, which is asked for at once (PLI, rate-limited by the SFU).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from fortrolig.core.errors import BadRequest
from fortrolig.media.subscriber import (
    ClockMapping,
    MediaPacket,
    RecordedPart,
    RecordedTrack,
    TrackSource,
)

from .depacketize import Vp8Depacketizer, Vp8Frame
from .jitter import JitterBuffer, Released
from .keys import file_associated_data
from .lipsync import VideoSync
from .stream_aead import EncryptingWriter
from .webm import StreamSpec, WebmWriter

log = logging.getLogger(__name__)

START_MARGIN_S = 0.2  # a part's zero lies this far before it opens: frames in flight fit
AUDIO_JITTER = (32, 0.1)  # packets, seconds (Galene holds audio 32 packets late)
VIDEO_JITTER = (256, 0.3)
DRIFT_LOG_S = 0.1  # a camera moved this far to keep lip sync is logged (once per part)


class PartSink(Protocol):
    """Where the ciphertext of each part goes (a file; later the journal's blob store)."""

    def open_part(self, recording_id: str, index: int) -> tuple[BinaryIO, str]:
        """A new, seekable binary file for part ``index``, and its name."""
        ...


_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def part_file_name(recording_id: str, index: int) -> str:
    """The file name of part ``index``: ``<recording id>.<index>.webm.enc``."""
    if not _SAFE_ID.fullmatch(recording_id) or index < 0:
        # The id names a file: nothing but [A-Za-z0-9_-] may reach a path.
        raise BadRequest("a recording id is 1-64 of A-Z a-z 0-9 _ -", code="bad_field")
    return f"{recording_id}.{index}.webm.enc"


class DirectorySink:
    """Parts as files ``<recording id>.<index>.webm.enc`` (mode 0600) in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def open_part(self, recording_id: str, index: int) -> tuple[BinaryIO, str]:
        name = part_file_name(recording_id, index)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.directory / name, flags, stat.S_IRUSR | stat.S_IWUSR)
        return os.fdopen(fd, "wb"), name


PartInfo = RecordedPart
"""One finished file of a recording (media's typed description, sent over the worker channel)."""


@dataclass
class _Track:
    """The recorder's state of one published track."""

    source: TrackSource
    added_at: float
    jitter: JitterBuffer[MediaPacket]
    vp8: Vp8Depacketizer | None
    keyframe: Vp8Frame | None = None  # latest keyframe seen (its size starts a part)
    first_packet: bool = False
    offset_sample: tuple[float, int] | None = None  # (arrival − ts/clock, ts): min, no SR
    in_part: bool = False
    waiting_keyframe: bool = True
    anchor: tuple[int, float] | None = None  # (RTP ts, own-clock pts) of the last frame written
    sync: VideoSync = field(default_factory=VideoSync)  # a camera's lip-sync correction
    removed: bool = False

    @property
    def video(self) -> bool:
        return self.vp8 is not None


@dataclass
class _Part:
    index: int
    name: str
    file: BinaryIO
    crypt: EncryptingWriter
    webm: WebmWriter
    zero: float  # monotonic time of pts 0
    tracks: list[str] = field(default_factory=list)


def _ntp_of(mapping: ClockMapping, ts: int, clock_rate: int) -> float:
    """The publisher's NTP seconds of RTP timestamp ``ts``, from its sender report."""
    return mapping.ntp_seconds + _signed32(ts - mapping.rtp) / clock_rate


def _signed32(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - (1 << 32) if delta & 0x80000000 else delta


class Recorder:
    """Records every track of a room it is attached to (``Sfu.attach_subscriber``)."""

    def __init__(
        self,
        recording_id: str,
        key: bytes,
        sink: PartSink,
        *,
        participants: Iterable[str] | None = None,
        start_wait_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.recording_id = recording_id
        # None: everyone (benchmarks); else only these participants' tracks are recorded.
        self._consented: set[str] | None = None if participants is None else set(participants)
        self._pending: dict[str, TrackSource] = {}  # tracks of participants yet to consent
        self._key = key
        self._sink = sink
        self._start_wait = start_wait_s
        self._clock = clock
        self._tracks: dict[str, _Track] = {}
        self._participant_offset: dict[str, float] = {}  # monotonic − publisher NTP seconds
        self._part: _Part | None = None
        self._origin: float | None = None  # monotonic zero of the recording's timeline
        self.parts: list[PartInfo] = []
        self.closed = False
        self.lost_packets = 0

    # -- Subscriber --------------------------------------------------------------------------

    def include(self, participant_id: str) -> None:
        """``participant_id`` consented: record their tracks from now on (in the next part)."""
        if self.closed or self._consented is None or participant_id in self._consented:
            return
        self._consented.add(participant_id)
        for track_id, source in list(self._pending.items()):
            if source.participant_id == participant_id:
                del self._pending[track_id]
                self.track_added(source)

    def track_added(self, source: TrackSource) -> None:
        """A published track: buffer it, ask for a keyframe, include it in the next part."""
        if self.closed or source.track_id in self._tracks:
            return
        if self._consented is not None and source.participant_id not in self._consented:
            self._pending[source.track_id] = source  # not a packet of it is kept
            return
        if source.screen:
            # A shared screen may show what the consent did not cover (another client's
            # file, a mailbox): recordings hold the cameras and microphones only.
            return
        video = source.kind == "video"
        if video and source.mime_type.lower() != "video/vp8":
            log.warning("not recording %s: %s is not supported", source.track_id, source.mime_type)
            return
        capacity, delay = VIDEO_JITTER if video else AUDIO_JITTER
        self._tracks[source.track_id] = _Track(
            source=source,
            added_at=self._clock(),
            jitter=JitterBuffer(capacity, delay),
            vp8=Vp8Depacketizer() if video else None,
        )
        source.request_keyframe()

    def track_removed(self, track_id: str) -> None:
        """The publisher left: flush what the buffer holds; the track ends in this part."""
        self._pending.pop(track_id, None)
        track = self._tracks.get(track_id)
        if track is None or self.closed:
            return
        for released in track.jitter.flush():
            self._frames_of(track, released)
        track.removed = True

    def rtp(self, track_id: str, packet: MediaPacket) -> None:
        """One packet, in arrival order."""
        track = self._tracks.get(track_id)
        if track is None or self.closed or track.removed:
            return
        self._observe(track, packet)
        for released in track.jitter.push(packet.sequence_number, packet, packet.arrival):
            self._frames_of(track, released)
        self._maybe_start()

    # -- clock mapping -----------------------------------------------------------------------

    def _observe(self, track: _Track, packet: MediaPacket) -> None:
        """Learn the offsets of the timeline from a packet's arrival (before a part starts)."""
        track.first_packet = True
        if track.in_part:
            return
        source = track.source
        mapping = source.clock_mapping()
        if mapping is not None:
            offset = packet.arrival - _ntp_of(mapping, packet.timestamp, source.clock_rate)
            known = self._participant_offset.get(source.participant_id)
            if known is None or offset < known:
                self._participant_offset[source.participant_id] = offset
        sample = track.offset_sample
        value = packet.arrival - packet.timestamp / source.clock_rate
        if sample is None or value < sample[0]:
            track.offset_sample = (value, packet.timestamp)

    def _local_time(self, track: _Track, ts: int) -> float:
        """Monotonic time of RTP timestamp ``ts`` (publisher's clock via its sender report and
        the participant's offset, else this track's own arrivals)."""
        source = track.source
        mapping = source.clock_mapping()
        offset = self._participant_offset.get(source.participant_id)
        if mapping is not None and offset is not None:
            return offset + _ntp_of(mapping, ts, source.clock_rate)
        assert track.offset_sample is not None
        value, ref_ts = track.offset_sample
        return value + ref_ts / source.clock_rate + _signed32(ts - ref_ts) / source.clock_rate

    def _pts(self, track: _Track, ts: int) -> float:
        """Seconds on the current part's timeline; frozen once the track's first frame is in."""
        if track.anchor is None:
            assert self._part is not None
            return self._local_time(track, ts) - self._part.zero
        ref_ts, ref_pts = track.anchor
        return ref_pts + _signed32(ts - ref_ts) / track.source.clock_rate

    # -- frames ------------------------------------------------------------------------------

    def _frames_of(self, track: _Track, released: Released[MediaPacket]) -> None:
        packet = released.item
        if released.after_gap:
            self.lost_packets += 1
        if track.vp8 is None:
            self._write(track, packet.timestamp, packet.payload, True)
            return
        if released.after_gap and track.in_part:
            # What follows may refer to a lost frame: only a keyframe may come next.
            track.waiting_keyframe = True
            track.source.request_keyframe()
        for frame in track.vp8.push(
            packet.timestamp, packet.marker, packet.payload, released.after_gap
        ):
            if frame.keyframe:
                track.keyframe = frame
            self._write(track, frame.timestamp, frame.data, frame.keyframe)
        if track.keyframe is None:
            # Not ready until one comes, and the request made when the track was added may
            # have been suppressed (a subscriber had just asked): keep asking; the SFU
            # rate-limits it. A publisher that sends keyframes only on request (Chromium)
            # would otherwise stay out of the recording.
            track.source.request_keyframe()

    def _write(self, track: _Track, ts: int, data: bytes, keyframe: bool) -> None:
        part = self._part
        if part is None or not track.in_part:
            return
        if track.video and track.waiting_keyframe:
            if not keyframe:
                track.source.request_keyframe()  # rate-limited by the SFU
                return
            track.waiting_keyframe = False
        pts = self._pts(track, ts)
        if pts < 0:
            return  # from before this part began
        track.anchor = (ts, pts)
        if track.video:
            before = track.sync.largest
            pts = track.sync.place(pts, self._audio_pts(part, track, ts))
            if track.sync.largest >= DRIFT_LOG_S > before:
                log.info(
                    "recording %s: %s follows its audio by sender reports, %+.0f ms",
                    self.recording_id,
                    track.source.track_id,
                    track.sync.correction * 1000,
                )
        part.webm.write(track.source.track_id, round(pts * 1000), data, keyframe)

    def _audio_pts(self, part: _Part, video: _Track, ts: int) -> float | None:
        """Where the participant's audio timeline in ``part`` has the instant of video RTP
        timestamp ``ts``, by both tracks' latest sender reports (None without them)."""
        vmap = video.source.clock_mapping()
        if vmap is None:
            return None
        for track_id in part.tracks:
            audio = self._tracks[track_id]
            if (
                audio.video
                or audio.anchor is None
                or audio.source.participant_id != video.source.participant_id
            ):
                continue
            amap = audio.source.clock_mapping()
            if amap is None:
                return None
            ntp = _ntp_of(vmap, ts, video.source.clock_rate)
            ref_ts, ref_pts = audio.anchor
            rate = audio.source.clock_rate
            return ref_pts + _signed32(amap.rtp - ref_ts) / rate + (ntp - amap.ntp_seconds)
        return None

    # -- parts -------------------------------------------------------------------------------

    def _ready(self, track: _Track, now: float) -> bool:
        if track.removed or not track.first_packet or (track.video and track.keyframe is None):
            return False
        has_clock = (
            track.source.clock_mapping() is not None
            and track.source.participant_id in self._participant_offset
        )
        return has_clock or now - track.added_at >= self._start_wait

    def _maybe_start(self) -> None:
        live = [t for t in self._tracks.values() if not t.removed]
        if self._part is not None and all(t.in_part for t in live):
            return  # the common case, per packet: nothing to decide
        now = self._clock()
        ready = [t for t in live if t.in_part or self._ready(t, now)]
        waiting = [t for t in live if not t.in_part]
        oldest = min((t.added_at for t in waiting), default=now)
        # Start (or switch parts) once every new track is ready, so that a late joiner's
        # audio and video arrive in one new part; a track that never gets ready (a camera
        # that sends no keyframe) holds the others back for start_wait_s at most.
        if len(ready) < len(live) and now - oldest < self._start_wait:
            return
        if not any(not t.in_part for t in ready):
            return
        if self._part is not None:
            self._close_part()
        self._open_part(ready, now)

    def _open_part(self, tracks: list[_Track], now: float) -> None:
        index = len(self.parts)
        file, name = self._sink.open_part(self.recording_id, index)
        crypt = EncryptingWriter(file, self._key, file_associated_data(self.recording_id, index))
        specs = [_spec(t) for t in tracks]
        zero = now - START_MARGIN_S
        self._part = _Part(index, name, file, crypt, WebmWriter(crypt, specs), zero)
        if self._origin is None:
            self._origin = zero
        for track in tracks:
            track.in_part = True
            track.anchor = None
            track.sync = VideoSync()
            track.waiting_keyframe = track.video
            self._part.tracks.append(track.source.track_id)
            if track.video:
                track.source.request_keyframe()
        log.info("recording %s: part %d with %s", self.recording_id, index, self._part.tracks)

    def _close_part(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        try:
            part.webm.close()
        finally:
            part.crypt.close()
            part.file.close()
        described = []
        for track_id in part.tracks:
            source = self._tracks[track_id].source
            described.append(RecordedTrack(track_id, source.participant_id, source.kind))
            self._tracks[track_id].in_part = False
        assert self._origin is not None
        self.parts.append(
            PartInfo(
                index=part.index,
                name=part.name,
                starts_at_s=part.zero - self._origin,
                duration_s=part.webm.duration_ms / 1000,
                tracks=tuple(described),
                frames=part.webm.frames,
            )
        )

    def codecs_opened(self) -> int:
        """Codec contexts the current part's muxer has open (stays 0)."""
        return self._part.webm.codecs_opened() if self._part is not None else 0

    def close(self) -> list[PartInfo]:
        """Flush every track, finish the current part; returns the parts. Idempotent."""
        if not self.closed:
            for track in self._tracks.values():
                if not track.removed:
                    for released in track.jitter.flush():
                        self._frames_of(track, released)
            self.closed = True
            self._close_part()
        return list(self.parts)


def _spec(track: _Track) -> StreamSpec:
    source = track.source
    if track.keyframe is not None:
        return StreamSpec(source.track_id, "video", track.keyframe.width, track.keyframe.height)
    return StreamSpec(source.track_id, "audio")


class DirectoryRecorders:
    """The :class:`~fortrolig.media.subscriber.RecorderFactory` of a node: recorders whose
    encrypted parts go into ``directory`` (created 0700)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory

    def __call__(self, recording_id: str, key: bytes, participants: tuple[str, ...]) -> Recorder:
        """A recorder of ``participants`` (more through :meth:`Recorder.include`)."""
        part_file_name(recording_id, 0)  # refuse an unsafe id before anything starts
        return Recorder(recording_id, key, DirectorySink(self.directory), participants=participants)

"""A camera keeps lip sync with its microphone when the publisher's audio clock falls behind.

A browser's audio RTP timestamp counts samples. When its audio thread stalls (a loaded machine,
a new microphone), 200 ms of samples never exist: the counter falls 200 ms behind the capture
clock, and the sender reports say so. The recorder's frozen part timeline plays audio by its
counter, without a gap, so a camera placed by its own clock would run 200 ms behind the voice
for the rest of the part. Real packets go through the real recorder and muxer; the file is
decrypted and demuxed, and each frame's place is compared with the audio's at the same
capture instant.
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import av
import pytest

from fortrolig.media.subscriber import ClockMapping, MediaPacket
from fortrolig.recording.keys import file_associated_data
from fortrolig.recording.lipsync import STEP_S, VideoSync
from fortrolig.recording.recorder import DirectorySink, Recorder
from fortrolig.recording.stream_aead import SegmentReader

NTP0 = 3_900_000_000.0  # the publisher's NTP clock at its capture instant 0
DELAY_S = 0.010  # network: every packet arrives this long after its capture
STALL_AT, STALL_S = 5.0, 0.2
OPUS_SILENCE = b"\xf8\xff\xfe"


class Source:
    """One published track whose sender report the test moves (the SFU's view of it)."""

    participant_id = "p_anna"
    screen = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.track_id = f"p_anna-{kind}"
        self.mime_type = "video/VP8" if kind == "video" else "audio/opus"
        self.clock_rate = 90_000 if kind == "video" else 48_000
        self.mapping: ClockMapping | None = None

    def clock_mapping(self) -> ClockMapping | None:
        return self.mapping

    def report(self, instant: float, rtp: float) -> None:
        self.mapping = ClockMapping(round((NTP0 + instant) * (1 << 32)), round(rtp) & 0xFFFFFFFF)

    def request_keyframe(self) -> None:
        pass


def audio_rtp(instant: float, stall: bool) -> float:
    """Samples counted by capture instant ``instant``: none during the stall."""
    lost = STALL_S if stall and instant >= STALL_AT + STALL_S else 0.0
    return 48_000 * (instant - lost)


def vp8(keyframe: bool) -> bytes:
    if keyframe:
        header = b"\x00\x00\x00" + b"\x9d\x01\x2a" + (320).to_bytes(2, "little")
        header += (240).to_bytes(2, "little")
    else:
        header = b"\x01\x00\x00"
    return b"\x10" + header + bytes(20)


def record(tmp_path: Path, stall: bool, seconds: float = 10.0) -> tuple[list, list]:
    """Drive a recorder; returns [(capture instant, pts)] for audio and for video, in order."""
    now = [0.0]
    key = os.urandom(32)
    recorder = Recorder("rec_sync", key, DirectorySink(tmp_path), clock=lambda: now[0])
    audio, video = Source("audio"), Source("video")
    recorder.track_added(audio)
    recorder.track_added(video)
    events: list[tuple[float, str, int]] = []
    events += [(k * 0.02, "audio", k) for k in range(int(seconds / 0.02))]
    events += [(k / 30, "video", k) for k in range(int(seconds * 30))]
    sent: dict[str, list[float]] = {"audio": [], "video": []}
    seqs = {"audio": 0, "video": 0}
    for instant, kind, k in sorted(events):
        if kind == "audio" and stall and STALL_AT <= instant < STALL_AT + STALL_S:
            continue  # the stall: these samples never existed
        now[0] = instant + DELAY_S
        if kind == "audio":
            rtp = audio_rtp(instant, stall)
            if k % 50 == 0:
                audio.report(instant, rtp)
            packet = MediaPacket(1, seqs[kind], round(rtp), 111, True, OPUS_SILENCE, now[0])
        else:
            rtp = 90_000 * instant
            if k % 30 == 0:
                video.report(instant, rtp)
            packet = MediaPacket(2, seqs[kind], round(rtp), 96, True, vp8(k % 30 == 0), now[0])
        seqs[kind] += 1
        sent[kind].append(instant)
        recorder.rtp(f"p_anna-{kind}", packet)
    (part,) = recorder.close()
    with open(tmp_path / part.name, "rb") as f:
        plain = SegmentReader(f, key, file_associated_data("rec_sync", part.index)).read_all()
    placed: dict[str, list[float]] = {}
    with av.open(io.BytesIO(plain)) as container:
        for stream in container.streams:
            kind = "video" if stream.type == "video" else "audio"
            with av.open(io.BytesIO(plain)) as again:
                placed[kind] = [
                    float(p.pts * p.time_base)
                    for p in again.demux(again.streams[stream.index])
                    if p.pts is not None
                ]
    # The part starts with a keyframe and ends with the last frame: pair from the end.
    pairs = {k: list(zip(sent[k][-len(placed[k]) :], placed[k], strict=True)) for k in placed}
    return pairs["audio"], pairs["video"]


def skew_at(audio: list, video: list, start: float, end: float) -> list[float]:
    """Video pts minus audio pts of the same capture instant, for video frames in [start, end)."""
    out = []
    for instant, pts in video:
        if not start <= instant < end:
            continue
        a_instant, a_pts = min(audio, key=lambda a: abs(a[0] - instant))
        out.append(pts - (a_pts + instant - a_instant))
    return out


@pytest.mark.parametrize("stall", [False, True])
def test_the_camera_follows_the_audio_clock_by_sender_reports(tmp_path: Path, stall: bool) -> None:
    audio, video = record(tmp_path, stall)
    assert all(abs(s) < 0.005 for s in skew_at(audio, video, 1.0, STALL_AT)), "before"
    # Sender reports come once a second: the camera follows within one report and 20 frames.
    after = skew_at(audio, video, STALL_AT + STALL_S + 1.8, 10.0)
    assert after and all(abs(s) < 0.005 for s in after), after
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(video)]
    assert min(gaps) > 0.0 and max(gaps) < 1 / 30 + 0.002  # moved in steps, never back
    # The audio itself plays on without a gap: 200 ms of samples never existed.
    audio_gaps = [b[1] - a[1] for a, b in itertools.pairwise(audio)]
    assert max(audio_gaps) < 0.021


def test_a_correction_is_bounded_per_frame_and_implausible_reports_are_ignored() -> None:
    sync = VideoSync()
    placed = [sync.place(k / 30, k / 30 - 0.3) for k in range(60)]
    assert sync.correction == pytest.approx(-0.3)
    steps = [b - a for a, b in itertools.pairwise(placed)]
    assert min(steps) == pytest.approx(1 / 30 - STEP_S)
    before = sync.correction
    sync.place(3.0, 3.0 + 60.0)  # a restarted publisher's report, a minute away
    assert sync.correction == before
    assert sync.place(3.1, None) == pytest.approx(3.1 + before)  # no report: as it was

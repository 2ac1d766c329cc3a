"""The recorder keeps asking for a keyframe until a video track has one.

Chromium sends a VP8 keyframe only when asked. The SFU suppresses a request that follows
another within its keyframe interval (a subscriber that just joined may have asked), so a
recorder that asked once, when the track was added, could wait for ever and leave the camera
out of the recording. Real packets go in; the fake source stands for the SFU's rate limiter.
"""

from __future__ import annotations

import os
from pathlib import Path

from fortrolig.media.subscriber import ClockMapping, MediaPacket
from fortrolig.recording.recorder import DirectorySink, Recorder


class Source:
    """A published VP8 track whose keyframe requests are counted (the first is 'suppressed')."""

    track_id = "p_anna-video"
    participant_id = "p_anna"
    kind = "video"
    screen = False
    mime_type = "video/VP8"
    clock_rate = 90_000

    def __init__(self) -> None:
        self.requests = 0

    def clock_mapping(self) -> ClockMapping | None:
        return None

    def request_keyframe(self) -> None:
        self.requests += 1


def vp8(seq: int, keyframe: bool) -> MediaPacket:
    if keyframe:
        header = b"\x00\x00\x00" + b"\x9d\x01\x2a" + (320).to_bytes(2, "little")
        header += (240).to_bytes(2, "little")
    else:
        header = b"\x01\x00\x00"
    payload = b"\x10" + header + bytes(20)  # descriptor: start of partition 0
    return MediaPacket(0x1234, seq, seq * 3000, 96, True, payload, arrival=seq / 30)


def test_a_video_track_without_a_keyframe_is_asked_again_until_one_comes(
    tmp_path: Path,
) -> None:
    now = [0.0]
    recorder = Recorder("rec_test", os.urandom(32), DirectorySink(tmp_path), clock=lambda: now[0])
    source = Source()
    recorder.track_added(source)
    assert source.requests == 1  # suppressed by the SFU, as far as the publisher knows
    for seq in range(1, 40):
        now[0] = seq / 30
        recorder.rtp(source.track_id, vp8(seq, keyframe=False))
    asked = source.requests
    assert asked > 10  # every delta frame asks again (the SFU keeps the real rate low)
    assert recorder.parts == [] and not any(tmp_path.iterdir())  # nothing to record yet

    for seq in range(40, 140):
        now[0] = seq / 30
        # Without a sender report the part opens after start_wait_s (3 s) and, opening, asks
        # for a fresh keyframe (seq 110, 3.7 s) to begin the file with.
        recorder.rtp(source.track_id, vp8(seq, keyframe=seq in (40, 110)))
    recorder.close()
    (part,) = recorder.parts
    assert [t.track_id for t in part.tracks] == [source.track_id]
    assert part.frames == 30  # 110..139: from the keyframe on

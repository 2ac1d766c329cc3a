"""VP8 descriptor and frame assembly, the jitter buffer, the key wrap and passthrough muxing."""

from __future__ import annotations

import io
import struct

import av
import pytest

from fortrolig.core.aead import IntegrityError
from fortrolig.recording.depacketize import (
    MalformedPayload,
    Vp8Depacketizer,
    parse_vp8_descriptor,
    vp8_frame_info,
)
from fortrolig.recording.jitter import JitterBuffer
from fortrolig.recording.keys import (
    key_aad,
    new_recording_key,
    unwrap_recording_key,
    wrap_recording_key,
)
from fortrolig.recording.webm import StreamSpec, WebmWriter

KEYFRAME = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", 640 | 0x4000, 360) + b"k" * 20
DELTA = b"\x11\x02\x00" + b"d" * 20


@pytest.mark.parametrize(
    ("descriptor", "start", "offset"),
    [
        (b"\x10", True, 1),  # X=0, S=1 (Chrome sends such packets)
        (b"\x00", False, 1),
        (b"\x90\x80\x05", True, 3),  # X, I with a 7-bit picture id
        (b"\x90\x80\x85\x01", True, 4),  # 15-bit picture id (M bit)
        (b"\x90\xe0\x85\x01\x07\x20", True, 6),  # I + L + T
        (b"\x90\x10\x20", True, 3),  # K only
        (b"\x11", False, 1),  # S=1 but partition 1: not a frame start
    ],
)
def test_vp8_descriptor(descriptor: bytes, start: bool, offset: int) -> None:
    parsed = parse_vp8_descriptor(descriptor + b"payload")
    assert (parsed.start, parsed.offset) == (start, offset)


def test_vp8_descriptor_and_frame_junk_is_refused() -> None:
    for junk in (b"", b"\x80", b"\x90\x80", b"\x10"):
        with pytest.raises(MalformedPayload):
            parse_vp8_descriptor(junk)
    with pytest.raises(MalformedPayload):
        vp8_frame_info(b"\x10\x02\x00nostartcode")


def test_keyframe_size_comes_from_its_header() -> None:
    assert vp8_frame_info(KEYFRAME) == (True, 640, 360)  # the scale bits are masked
    assert vp8_frame_info(DELTA) == (False, 0, 0)


def test_frames_end_on_the_marker_or_a_new_timestamp_and_gaps_drop_them() -> None:
    d = Vp8Depacketizer()
    assert d.push(1000, False, b"\x10" + KEYFRAME[:10], False) == []
    [frame] = d.push(1000, True, b"\x00" + KEYFRAME[10:], False)
    assert (frame.keyframe, frame.data, frame.width) == (True, KEYFRAME, 640)
    assert d.push(4000, False, b"\x10" + DELTA, False) == []  # marker lost...
    [delta] = d.push(7000, False, b"\x10" + DELTA, False)  # ...the next timestamp ends it
    assert (delta.timestamp, delta.keyframe) == (4000, False)
    assert d.push(7000, True, b"\x00more", True) == []  # a gap inside frame 7000: dropped
    assert d.push(9000, True, b"\x00tail", False) == []  # no start seen: dropped
    assert d.dropped == 3  # the interrupted frame, its headless rest, the headless 9000


def test_jitter_buffer_reorders_reports_gaps_and_wraps() -> None:
    jb: JitterBuffer[str] = JitterBuffer(capacity=4, max_delay_s=0.1)
    assert [r.seq for r in jb.push(65534, "a", 0.0)] == [65534]
    assert jb.push(0, "c", 0.0) == []  # 65535 is missing
    assert [(r.item, r.after_gap) for r in jb.push(65535, "b", 0.01)] == [
        ("b", False),
        ("c", False),
    ]
    assert jb.push(3, "e", 0.02) == []
    released = jb.push(4, "f", 0.2)  # 1 and 2 waited too long
    assert [(r.item, r.after_gap) for r in released] == [("e", True), ("f", False)]
    assert jb.lost == 2
    assert jb.push(1, "late", 0.3) == [] and jb.late == 1


def test_recording_key_wrap_is_bound_to_its_recording() -> None:
    journal_key, recording_key = new_recording_key(), new_recording_key()
    aad = key_aad("practitioner-1", "client-1", "rec-1", key_version=1)
    wrapped = wrap_recording_key(journal_key, recording_key, aad)
    assert unwrap_recording_key(journal_key, wrapped, aad) == recording_key
    with pytest.raises(IntegrityError):
        unwrap_recording_key(
            journal_key, wrapped, key_aad("practitioner-1", "client-1", "rec-2", 1)
        )
    with pytest.raises(IntegrityError):
        unwrap_recording_key(new_recording_key(), wrapped, aad)


def test_webm_passthrough_opens_no_codec_and_reads_back() -> None:
    out = io.BytesIO()
    writer = WebmWriter(
        out, [StreamSpec("a-video", "video", 640, 360), StreamSpec("a-audio", "audio")]
    )
    for i in range(30):
        writer.write("a-video", i * 33, KEYFRAME if i == 0 else DELTA, i == 0)
        writer.write("a-audio", i * 20, b"\xfc\xff\xfe", True)
    assert writer.write("a-audio", 5, b"\xfc\xff\xfe", True) == 30 * 20 - 19  # bumped
    assert writer.codecs_opened() == 0
    writer.close()
    with av.open(io.BytesIO(out.getvalue())) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (640, 360)
        assert audio.codec_context.extradata[:8] == b"OpusHead"
        assert audio.codec_context.extradata[10:12] == b"\x00\x00"  # pre-skip 0
        assert sum(1 for p in container.demux() if p.size) == 61

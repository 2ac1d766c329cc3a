"""The load generator's cheap receive statistics and scenario parsing."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from fortrolig.loadtests.probe import RecvStats
from fortrolig.loadtests.report import percentile
from fortrolig.loadtests.scenario import ScenarioError, parse_bitrate, parse_duration


def packet(seq: int, ts: int, marker: bool = True, pt: int = 96) -> RtpPacket:
    return RtpPacket(
        payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, payload=b"x" * 100
    )


def test_loss_counts_sequence_gaps_across_the_wrap() -> None:
    s = RecvStats("video", "p")
    seqs = [65533, 65534, 0, 1, 3, 4]  # 65535 and 2 are missing
    for i, seq in enumerate(seqs):
        s.on_packet(packet(seq, i * 3000), 1.0 + i / 30)
    assert s.expected == 8
    assert s.received == 6
    assert s.lost == 2
    assert s.frames == 6
    assert s.bytes == 6 * 112


def test_a_retransmission_counts_as_received() -> None:
    s = RecvStats("video", "p")
    s.on_packet(packet(10, 0), 1.0)
    s.on_packet(packet(12, 3000), 1.03)
    s.on_packet(packet(500, 0, pt=97), 1.05)  # RTX of 11
    assert (s.expected, s.received, s.lost, s.recovered) == (3, 3, 0, 1)


def test_freezes_are_video_gaps_over_half_a_second() -> None:
    s = RecvStats("video", "p")
    times = [0.0, 0.033, 0.066, 0.7, 0.733, 2.0]
    for i, t in enumerate(times):
        s.on_packet(packet(i, i * 3000), t)
    assert s.freezes == 2
    assert s.freeze_s == pytest.approx((0.7 - 0.066) + (2.0 - 0.733))
    s.close_window(2.2)
    assert s.freezes == 2  # 0.2 s since the last frame is no freeze
    s.close_window(3.0)
    assert s.freezes == 3


def test_jitter_is_zero_for_perfect_pacing_and_grows_with_variation() -> None:
    s = RecvStats("audio", "p")
    for i in range(50):
        s.on_packet(packet(i, i * 960), i * 0.02)
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-6)
    for i in range(50, 100):
        s.on_packet(packet(i, i * 960), i * 0.02 + (0.005 if i % 2 else 0.0))
    assert 2.0 < s.jitter_ms < 5.0


def test_parsers_and_percentile() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_bitrate("1.5M") == 1_500_000
    assert parse_bitrate("48k") == 48_000
    with pytest.raises(ScenarioError):
        parse_duration("soon")
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == 5
    assert percentile([], 50) is None

"""NACK tracking and receive statistics (RFC 3550 A.1 / A.3 / A.8)."""

from __future__ import annotations

import time

from fortrolig.media import _fastpath
from tests.unit.media.native.harness import (
    PT,
    make_track,
    rtp,
    rtx,
)

# ------------------------------------------------------------------------------------------
# NACK tracking
# ------------------------------------------------------------------------------------------


def test_nack_finds_gaps_forgets_late_packets_and_gives_up_after_five_asks() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(10))
    assert calls.missing == []
    asked = time.monotonic()
    track.ingest(rtp(14))
    assert calls.missing == [[11, 12, 13]]  # first ask
    track.ingest(rtp(12))  # late or retransmitted
    assert calls.missing == [[11, 12, 13]]
    assert track.missing() == [11, 13]
    # Nothing is asked again before the wait (100 ms while no answer time is measured).
    assert track.nack_due(asked + 0.05) == []
    wait = track.nack_wait(asked + 0.05)
    assert wait is not None and 0.04 < wait <= 0.06
    now = asked
    for _ask in range(2, 6):
        now += 0.11
        assert track.nack_due(now) == [11, 13]
    assert track.nack_due(now + 0.11) == []  # the fifth ask went unanswered: given up
    assert track.missing() == []
    assert track.nack_wait() is None


def test_nack_asks_again_after_the_publishers_measured_answer_time() -> None:
    track, _ = make_track(_fastpath.Counters(), nack=True)
    assert track.nack_answer is None
    for seq in (0, 2):
        track.ingest(rtp(seq))
    time.sleep(0.03)
    # A reordered (not retransmitted) packet says nothing about the answer time...
    track.ingest(rtp(1))
    assert track.nack_answer is None
    track.ingest(rtp(4))
    time.sleep(0.03)
    track.ingest(rtx(500, 3))  # ...a retransmission of a packet asked for once does
    answer = track.nack_answer
    assert answer is not None and 0.025 < answer < 1
    track.ingest(rtp(6))
    asked = time.monotonic()
    wait = 1.5 * answer + 0.01  # with a floor of 20 ms and a ceiling of 500 ms
    assert track.nack_due(asked + wait - 0.01) == []
    assert track.nack_due(asked + wait + 0.01) == [5]


def test_nack_treats_a_huge_jump_as_a_restart() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(10))
    track.ingest(rtp(14))
    track.ingest(rtp(14 + 129))  # one forged packet must not cause a NACK storm
    assert calls.missing == [[11, 12, 13]]
    assert track.missing() == []
    track.ingest(rtp(14 + 129 + 128))  # the widest gap that still counts as loss
    assert calls.missing[-1] == list(range(144, 271))
    assert len(track.missing()) == 127


def test_nack_remembers_at_most_256_missing_packets_newest_first() -> None:
    track, _ = make_track(_fastpath.Counters(), nack=True)
    for seq in (0, 100, 200, 300):
        track.ingest(rtp(seq))
    missing = track.missing()
    expected = [s for s in range(300) if s % 100][-256:]
    assert missing == expected


def test_nack_across_the_sequence_wrap() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=True)
    track.ingest(rtp(65534))
    track.ingest(rtp(1))
    assert calls.missing == [[65535, 0]]
    track.ingest(rtp(65535))
    assert track.missing() == [0]


def test_no_nack_tracking_when_disabled() -> None:
    track, calls = make_track(_fastpath.Counters(), nack=False)
    track.ingest(rtp(10))
    track.ingest(rtp(20))
    assert (calls.missing, track.missing(), track.nack_due()) == ([], [], [])


# ------------------------------------------------------------------------------------------
# Receive statistics (RFC 3550 A.1 / A.3 / A.8)
# ------------------------------------------------------------------------------------------


def test_report_loss_fraction_and_extended_highest_seq() -> None:
    counters = _fastpath.Counters()
    track, _ = make_track(counters)
    assert track.report() is None
    track.ingest(rtp(1, pt=PT + 10))  # not accepted: still nothing to report
    assert track.report() is None

    for seq in (10, 11, 14):
        track.ingest(rtp(seq))
    report = track.report()
    assert report is not None
    assert report[:3] == (2 * 256 // 5, 2, 14)  # 5 expected, 3 received
    report = track.report()
    assert report is not None and report[:3] == (0, 2, 14)  # fraction is per interval

    for seq in (15, 16, 20):
        track.ingest(rtp(seq))
    report = track.report()
    assert report is not None
    assert report[:3] == (3 * 256 // 6, 5, 20)  # interval: 6 expected, 3 received

    track.ingest(rtp(12))  # late
    report = track.report()
    assert report is not None and report[:3] == (0, 4, 20)


def test_report_extends_the_highest_seq_across_the_wrap() -> None:
    track, _ = make_track(_fastpath.Counters())
    for seq in (65534, 65535, 0, 1):
        track.ingest(rtp(seq))
    assert track.report() == (0, 0, 65536 + 1, 0)  # same timestamp: no jitter


def test_report_jitter_follows_rfc3550() -> None:
    track, _ = make_track(_fastpath.Counters(), clock_rate=90000)
    track.ingest(rtp(1, ts=0))
    track.ingest(rtp(2, ts=90000))  # one second of media arriving at once: |D| ~ 90000
    report = track.report()
    assert report is not None
    assert 90000 // 16 - 500 <= report[3] <= 90000 // 16  # J = |D| / 16 after one step

"""The soak's verdict (bench/soak_summary.py): warm-up cut, baseline vs end, growth, PASS/FAIL."""

from __future__ import annotations

import math

import pytest

from bench.soak_summary import (
    after_warmup,
    format_summary,
    growth,
    slope_per_h,
    summarize,
    warmup_cut_s,
    window_size,
)


def flat(value: float, n: int = 20, step: float = 30.0) -> list[tuple[float, float]]:
    return [(i * step, value) for i in range(n)]


def test_warmup_cut_is_explicit_seconds_or_a_share_of_the_run() -> None:
    assert warmup_cut_s(3600, None, 0.1) == 360
    assert warmup_cut_s(3600, 120, 0.1) == 120
    assert warmup_cut_s(3600, -5, 0.1) == 0
    # The floor (the node's idle-room time plus a minute) wins over a short run's tenth, but
    # never cuts more than half of the run.
    assert warmup_cut_s(1800, None, 0.1, floor_s=360) == 360
    assert warmup_cut_s(3600 * 10, None, 0.1, floor_s=360) == 3600
    assert warmup_cut_s(120, None, 0.1, floor_s=360) == 60
    assert after_warmup([(0, 1), (10, 2), (20, 3)], 10) == [(10, 2), (20, 3)]


def test_window_takes_a_tenth_at_least_three_never_more_than_half() -> None:
    assert window_size(0) == 0
    assert window_size(1) == 1
    assert window_size(4) == 2
    assert window_size(10) == 3
    assert window_size(100) == 10


def test_a_flat_series_after_a_warmup_climb_passes() -> None:
    climb = [(0.0, 50.0), (30.0, 80.0), (60.0, 95.0)]  # warm-up: cut
    steady = [(90.0 + 30 * i, 100.0 + (i % 2)) for i in range(30)]
    g = growth("rss", climb + steady, cut_s=90)
    assert g.samples == 30 and g.ok
    assert g.baseline == 100.0 and g.end == pytest.approx(100.5, abs=0.5)
    assert abs(g.growth_pct or 0) <= 1


def test_a_steady_leak_fails_and_shows_in_the_slope() -> None:
    leak = [(i * 60.0, 100.0 + i) for i in range(60)]  # +1 per minute, an hour
    g = growth("fds", leak, cut_s=0)
    assert not g.ok
    assert (g.baseline, g.end) == (102.5, 156.5)  # medians of the first and last 6 samples
    assert g.growth_pct == pytest.approx(100 * 54 / 102.5)
    assert g.slope_pct_per_h == pytest.approx(100 * 60 / 102.5)


def test_growth_just_under_and_at_the_limit() -> None:
    under = [(0.0, 100.0)] * 3 + [(100.0, 109.9)] * 3
    at = [(0.0, 100.0)] * 3 + [(100.0, 110.0)] * 3
    assert growth("x", under, 0).ok
    assert not growth("x", at, 0).ok


def test_zero_baseline_and_no_samples() -> None:
    assert growth("threads", flat(0), 0).ok
    grew = growth("threads", [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)], 0)
    assert grew.growth_pct == math.inf and not grew.ok
    empty = growth("tasks", [(0, 5)], cut_s=100)
    assert empty.samples == 0 and not empty.ok


def test_slope() -> None:
    assert slope_per_h([(0, 1)]) is None
    assert slope_per_h([(5, 1), (5, 2)]) is None
    assert slope_per_h([(0, 0), (3600, 10)]) == pytest.approx(10)


def test_summary_verdict_needs_every_resource_and_no_error() -> None:
    good = {"rss": flat(100), "fds": flat(30)}
    ok = summarize(good, 600, warmup_frac=0.1)
    assert ok["verdict"] == "PASS" and ok["warmup_cut_s"] == 60
    assert set(ok["resources"]) == {"rss", "fds"}
    assert summarize(good, 600, errors=1)["verdict"] == "FAIL"
    bad = {**good, "tasks": [(i * 30.0, 10.0 + i) for i in range(20)]}
    assert summarize(bad, 600)["verdict"] == "FAIL"
    assert summarize({}, 600)["verdict"] == "FAIL"
    text = format_summary(summarize(bad, 600))
    assert "tasks" in text and "NO" in text and "verdict: FAIL" in text

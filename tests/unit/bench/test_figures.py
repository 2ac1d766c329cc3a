"""The memory and WebSocket benchmarks' arithmetic: fits, percentiles, spreads, addresses."""

from __future__ import annotations

import pytest

from bench.figures import addresses_needed, fit_line, percentile, source_address, spread


def test_fit_line_recovers_an_exact_line() -> None:
    line = fit_line([0, 10, 25, 50], [100.0, 120.0, 150.0, 200.0])
    assert line is not None
    assert line.slope == pytest.approx(2.0)
    assert line.intercept == pytest.approx(100.0)
    assert line.residual_sd == pytest.approx(0.0, abs=1e-9)
    assert line.points == 4


def test_fit_line_over_repeats_and_noise() -> None:
    xs = [0, 0, 10, 10]
    ys = [1.0, 3.0, 21.0, 23.0]
    line = fit_line(xs, ys)
    assert line is not None and line.slope == pytest.approx(2.0)
    assert line.intercept == pytest.approx(2.0) and line.residual_sd > 0


def test_fit_line_needs_two_distinct_x() -> None:
    assert fit_line([5, 5], [1.0, 2.0]) is None
    with pytest.raises(ValueError):
        fit_line([1, 2], [1.0])


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_spread() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([]) is None


def test_source_addresses_skip_dot_zero_and_are_distinct() -> None:
    assert source_address(0) == "127.10.0.1"
    assert source_address(249) == "127.10.0.250"
    assert source_address(250) == "127.10.1.1"
    many = {source_address(i) for i in range(700)}
    assert len(many) == 700
    with pytest.raises(ValueError):
        source_address(-1)


def test_addresses_needed_rounds_up() -> None:
    assert addresses_needed(10_000, 15) == 667
    assert addresses_needed(15, 15) == 1
    assert addresses_needed(0, 15) == 0
    with pytest.raises(ValueError):
        addresses_needed(1, 0)

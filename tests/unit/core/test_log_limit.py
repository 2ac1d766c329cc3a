"""Log lines outsiders can trigger are rate-limited (fortrolig/core/log_limit.py)."""

from __future__ import annotations

import logging

import pytest

from fortrolig.core.log_limit import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_one_line_per_interval_naming_what_was_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("t.limit"), burst=3, per_s=0.5, now=clock)
    with caplog.at_level(logging.WARNING, logger="t.limit"):
        written = [limited.warning("bad datagram from %s", n) for n in range(1000)]
        assert written.count(True) == 3  # varying arguments open no new allowance
        clock.t += 2.0  # one token back
        assert limited.warning("bad datagram from %s", "x")
        assert not limited.warning("bad datagram from %s", "y")
        assert limited.error("another kind of line")  # its own allowance
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5
    assert lines[3] == "bad datagram from x (997 similar lines held back)"


def test_exceptions_keep_their_traceback_when_written(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("t.limit2"), burst=1, per_s=0.1, now=Clock())
    with caplog.at_level(logging.ERROR, logger="t.limit2"):
        for _ in range(3):
            try:
                raise ValueError("x")
            except ValueError:
                limited.exception("handler failed")
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


def test_disabled_levels_cost_nothing_and_bad_settings_are_refused() -> None:
    quiet = logging.getLogger("t.limit3")
    quiet.setLevel(logging.ERROR)
    assert not RateLimitedLog(quiet).info("never")
    with pytest.raises(ValueError):
        RateLimitedLog(quiet, burst=0)

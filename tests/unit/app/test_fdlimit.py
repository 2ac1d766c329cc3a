"""The node's open-file limit: raised to the hard limit, never lowered, infinity handled."""

from __future__ import annotations

import logging
import resource

import pytest

from fortrolig.app import fdlimit
from fortrolig.app.fdlimit import NofileLimit, fds_needed, raise_nofile_limit

INF = resource.RLIM_INFINITY


class FakeLimits:
    """getrlimit/setrlimit over one (soft, hard) pair; refuses like the kernel can."""

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.value = (soft, hard)
        self.refuse = refuse
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.value

    def set(self, which: int, value: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(value)
        if self.refuse:
            raise ValueError("not allowed to raise maximum limit")
        self.value = value


def test_soft_goes_up_to_the_hard_limit() -> None:
    limits = FakeLimits(1024, 524288)
    got = raise_nofile_limit(5000, limits.get, limits.set)
    assert limits.value == (524288, 524288)
    assert got == NofileLimit(before=1024, soft=524288, hard=524288, needed=5000)
    assert got.enough


def test_never_lowers_and_does_not_call_set_when_nothing_to_raise() -> None:
    limits = FakeLimits(20000, 20000)
    got = raise_nofile_limit(100_000, limits.get, limits.set)
    assert limits.calls == []
    assert got.soft == 20000 and not got.enough


def test_infinite_hard_limit_raises_soft_to_the_need_only() -> None:
    limits = FakeLimits(1024, INF)
    got = raise_nofile_limit(9000, limits.get, limits.set)
    assert limits.value == (9000, INF)
    assert got.soft == 9000 and got.enough


def test_infinite_hard_limit_keeps_a_higher_soft_limit() -> None:
    limits = FakeLimits(65536, INF)
    got = raise_nofile_limit(9000, limits.get, limits.set)
    assert limits.calls == [] and got.soft == 65536


def test_infinite_soft_limit_is_left_alone_and_enough() -> None:
    limits = FakeLimits(INF, INF)
    got = raise_nofile_limit(10**9, limits.get, limits.set)
    assert limits.calls == [] and got.enough


def test_a_refusal_keeps_the_old_limit_and_says_why() -> None:
    limits = FakeLimits(1024, 4096, refuse=True)
    got = raise_nofile_limit(8000, limits.get, limits.set)
    assert limits.value == (1024, 4096)
    assert got.soft == 1024 and got.error is not None and "ValueError" in got.error
    assert not got.enough


def test_the_real_limit_is_not_lowered() -> None:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    got = raise_nofile_limit(1)
    after = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert after[0] >= before[0] and after[1] == before[1]
    assert got.soft == after[0]


@pytest.mark.parametrize(
    ("conns", "addresses", "inline", "want"),
    [
        (4096, 1, True, fdlimit.RESERVE_FDS + 4096 * 2),
        (4096, 1, False, fdlimit.RESERVE_FDS + 4096),
        (4096, 2, False, fdlimit.RESERVE_FDS + 8192),
        (10, 0, True, fdlimit.RESERVE_FDS + 20),
    ],
)
def test_need_per_process(conns: int, addresses: int, inline: bool, want: int) -> None:
    assert fds_needed(conns, addresses, inline) == want


def test_report_warns_when_below_the_need(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=fdlimit.__name__)
    fdlimit.report(NofileLimit(1024, 1024, 1024, 8448), 4096)
    text = caplog.text
    assert "soft 1024" in text and "needs 8448" in text
    assert any(r.levelno == logging.WARNING and "LimitNOFILE" in r.message for r in caplog.records)


def test_report_is_quiet_when_enough(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=fdlimit.__name__)
    fdlimit.report(NofileLimit(1024, 65536, 65536, 8448), 4096)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

"""Clock, ids and the error taxonomy."""

from __future__ import annotations

import re

import pytest

from fortrolig.core import errors
from fortrolig.core.clock import Clock, FakeClock, SystemClock
from fortrolig.core.ids import new_id, random_token


def test_fake_clock_moves_only_when_told() -> None:
    clock: Clock = FakeClock(now=100.0, monotonic=5.0)
    assert (clock.now(), clock.monotonic()) == (100.0, 5.0)
    assert isinstance(clock, FakeClock)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (102.5, 7.5)
    clock.set(50.0)  # wall clock may jump back; monotonic may not
    assert (clock.now(), clock.monotonic()) == (50.0, 7.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_system_clock() -> None:
    clock: Clock = SystemClock()
    assert clock.now() > 1_600_000_000
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_ids() -> None:
    ident = new_id("room")
    assert re.fullmatch(r"room_[a-z2-7]{26}", ident)
    assert len({new_id("p") for _ in range(1000)}) == 1000
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", random_token())
    assert len(random_token(16)) == 22


@pytest.mark.parametrize(
    ("cls", "code", "status", "fault"),
    [
        (errors.ProtocolError, "protocol_error", 400, "protocol"),
        (errors.BadRequest, "bad_request", 400, "client"),
        (errors.Unauthenticated, "unauthenticated", 401, "client"),
        (errors.Forbidden, "forbidden", 403, "client"),
        (errors.NotFound, "not_found", 404, "client"),
        (errors.Conflict, "conflict", 409, "client"),
        (errors.PayloadTooLarge, "too_large", 413, "client"),
        (errors.RateLimited, "rate_limited", 429, "client"),
        (errors.ConfigError, "config_error", 500, "server"),
    ],
)
def test_error_taxonomy(
    cls: type[errors.FortroligError], code: str, status: int, fault: str
) -> None:
    err = cls("boom")
    assert (err.code, err.status, err.fault, err.message, str(err)) == (
        code,
        status,
        fault,
        "boom",
        "boom",
    )
    assert isinstance(err, errors.FortroligError)
    specific = cls("boom", code="room_full")
    assert specific.code == "room_full" and cls.code == code
    assert "room_full" in repr(specific)

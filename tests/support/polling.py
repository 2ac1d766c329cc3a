"""One way for tests to wait on a condition instead of sleeping a fixed time.

``eventually`` (async, the event loop keeps running while it waits) and ``eventually_blocking``
(threads, subprocesses, the native data plane) fail the test with what was awaited when the
condition does not hold within the limit, and return how long it took; ``held_within`` only says
whether it held, for a test that asserts something about the outcome itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Detail = object  # a text, or a callable giving one when the wait failed (say, the last state)


def _describe(what: Detail) -> object:
    return what() if callable(what) else what


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    limit: float,
    what: Detail = "",
    step: float = 0.05,
) -> float:
    """Seconds until ``check()`` (or ``await check()``) held; fails the test after ``limit``."""
    start = time.monotonic()
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit} s: {_describe(what)}")
        await asyncio.sleep(step)


def held_within(check: Callable[[], bool], limit: float, step: float = 0.001) -> bool:
    """Whether ``check()`` held within ``limit`` seconds (blocking the calling thread)."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def eventually_blocking(
    check: Callable[[], bool], limit: float, what: Detail = "", step: float = 0.01
) -> float:
    """Seconds until ``check()`` held, blocking the calling thread; fails after ``limit``."""
    start = time.monotonic()
    if not held_within(check, limit, step):
        raise AssertionError(f"not within {limit} s: {_describe(what)}")
    return time.monotonic() - start

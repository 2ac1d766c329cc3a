"""Helpers every benchmark process needs: CPU pinning, loopback-only ICE, CPU counters."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aioice.ice

LOOPBACK = "127.0.0.1"
CLIENT_CORE = 0
SERVER_CORE = 1


def pin_process(core: int) -> None:
    """Pin every thread that exists now (and, by inheritance, every later one) to ``core``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})


def loopback_ice_only() -> None:
    """Offer only 127.0.0.1 as ICE host candidate in this process (aioice skips it otherwise)."""
    ice_host_only(LOOPBACK)


def ice_host_only(address: str) -> None:
    """Offer exactly ``address`` (IPv4) as ICE host candidate in this process."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address] if use_ipv4 else []

    aioice.ice.get_host_addresses = host_addresses


def process_cpu_s() -> float:
    """user + system CPU seconds of this process, all threads included."""
    t = os.times()
    return t.user + t.system


def threads_run_by_name() -> dict[str, float]:
    """Run time of this process's live threads by thread name (``comm``), summed per name: the
    event loop is "python", the SFU's native I/O thread "fortrolig-io"."""
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[name] = out.get(name, 0.0) + int(f.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def threads_run_s() -> float:
    """Time this process's live threads spent on a CPU, from the scheduler (ns resolution).

    A cross-check of :func:`process_cpu_s`; misses threads that already ended.
    """
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


@dataclass(frozen=True)
class CoreTicks:
    """Busy and total jiffies of one CPU from /proc/stat."""

    busy: int
    total: int


def read_core_ticks() -> dict[int, CoreTicks]:
    """Per-core busy/total jiffies (busy = everything but idle and iowait)."""
    out: dict[int, CoreTicks] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            values = [int(v) for v in fields[:8]]
            idle = values[3] + values[4]
            total = sum(values)
            out[int(name[3:])] = CoreTicks(total - idle, total)
    return out


def core_busy_pct(before: dict[int, CoreTicks], after: dict[int, CoreTicks], core: int) -> float:
    """How busy ``core`` was between two readings, in % (any process, this one included)."""
    a, b = before.get(core), after.get(core)
    if a is None or b is None or b.total == a.total:
        return float("nan")
    return 100.0 * (b.busy - a.busy) / (b.total - a.total)


async def wait_until(predicate: Callable[[], bool], limit_s: float, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``limit_s`` seconds passed (bounded loop)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


@dataclass(frozen=True)
class Memory:
    """Resident and proportional set size of one process, from /proc/PID/smaps_rollup (KiB)."""

    rss_kib: int
    pss_kib: int


def read_memory(pid: int) -> Memory | None:
    """``pid``'s Rss and Pss (None when it is gone or unreadable)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    values[name] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return Memory(values.get("Rss", 0), values.get("Pss", 0))


def count_fds(pid: int) -> int:
    """Open descriptors of ``pid`` (-1 when unreadable)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return -1


REPO = Path(__file__).resolve().parent.parent


def short_commit() -> str:
    """The checkout's commit (short hash) that a benchmark's figures belong to; "" outside git."""
    cmd = ["git", "rev-parse", "--short", "HEAD"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    return out.stdout.strip()


def exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM handler of the benchmarks: exit, so that their ``finally`` blocks stop what they
    started."""
    raise SystemExit(128 + signum)

"""Resource readings of a running node: its signaling process and its media worker children.

From /proc (RSS from ``status``, open descriptors from ``fd``, threads from ``task``) and from
the node's own /metrics (``fortrolig_asyncio_tasks``: live asyncio tasks of the signaling
process; ``fortrolig_media_worker_asyncio_tasks``: those of the media workers, summed;
``fortrolig_participants``, ``fortrolig_media_peers``: how busy the node was when the reading
was taken).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from .capacity import children, gauge, http_get


@dataclass(frozen=True)
class ProcReading:
    """One process's resources."""

    pid: int
    rss_kib: int
    fds: int
    threads: int


def read_proc(pid: int) -> ProcReading | None:
    """RSS, open fds and threads of ``pid`` (None when it is gone)."""
    try:
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return ProcReading(pid, rss, fds, threads)


def node_metrics(base_url: str) -> dict[str, float]:
    """The few gauges the soak records (NaN when /metrics did not answer)."""
    text = http_get(base_url + "/metrics", 5.0)
    names = {
        "asyncio_tasks": "fortrolig_asyncio_tasks",
        "participants": "fortrolig_participants",
        "rooms": "fortrolig_rooms",
        "media_peers": "fortrolig_media_peers",
        "media_workers": "fortrolig_media_workers",
        "workers_asyncio_tasks": "fortrolig_media_worker_asyncio_tasks",
    }
    if text is None:
        return {k: float("nan") for k in names}
    return {k: gauge(text, name) for k, name in names.items()}


def sample(pid: int, base_url: str, t_s: float) -> dict[str, Any]:
    """One reading of the node: the signaling process, each worker, their sums, /metrics."""
    main = read_proc(pid)
    workers = []
    for child in children(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"python" not in f.read():
                    continue  # e.g. a short-lived helper that is not a media worker
        reading = read_proc(child)
        if reading is not None:
            workers.append(reading)
    metrics = node_metrics(base_url)
    out: dict[str, Any] = {"t_s": t_s, **metrics}
    if main is not None:
        out.update(rss_kib=main.rss_kib, fds=main.fds, threads=main.threads)
    out["workers"] = [w.__dict__ for w in workers]
    out["workers_rss_kib"] = sum(w.rss_kib for w in workers)
    out["workers_fds"] = sum(w.fds for w in workers)
    out["workers_threads"] = sum(w.threads for w in workers)
    out["worker_pids"] = sorted(w.pid for w in workers)
    return out


# The series the verdict is taken on (key in a sample → name in the report).
RESOURCES = {
    "signaling_rss_kib": "rss_kib",
    "signaling_fds": "fds",
    "signaling_threads": "threads",
    "signaling_asyncio_tasks": "asyncio_tasks",
    "workers_rss_kib": "workers_rss_kib",
    "workers_fds": "workers_fds",
    "workers_threads": "workers_threads",
    "workers_asyncio_tasks": "workers_asyncio_tasks",
}


def series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Each resource's (t, value) pairs, skipping readings that are missing or NaN."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, key in RESOURCES.items():
        points = []
        for s in samples:
            value = s.get(key)
            if isinstance(value, int | float) and value == value:
                points.append((float(s["t_s"]), float(value)))
        out[name] = points
    return out

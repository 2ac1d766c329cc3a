"""Where a consultation's memory goes: tracemalloc in a node holding N consultations.

    .venv/bin/python -m bench.memory_profile --rooms 10 --out /tmp/memory-profile.json

A ``fortrolig serve --media-workers 1`` run under ``python -X tracemalloc=10`` through this
module (``--node``), which writes a tracemalloc snapshot when it gets SIGUSR1 and then serves
as usual. One snapshot on the idle node, one while fortrolig-load holds ``--rooms``
consultations (as bench.memory); the difference grouped by source line (and by file), divided
by the consultations, is the Python heap per consultation. The node's Rss difference over the
same two moments minus that is what tracemalloc cannot see: C allocations (the native data
plane, libsrtp/OpenSSL contexts, PyAV) and allocator overhead. tracemalloc slows the node, so
only the where, not the CPU, is read from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .capacity import LOAD_FROM_ONE_ADDRESS, free_port, http_get, stop
from .common import SERVER_CORE, read_memory
from .memory import PER_ROOM, RAMP_PER_S, start_load, wait_participants

TOP = 25


def node_main(dump_dir: str, argv: list[str]) -> int:
    """The node's process: snapshots on SIGUSR1, then ``fortrolig serve``."""
    from fortrolig.app.cli import main as fortrolig_main

    count = [0]

    def dump(signum: int, frame: Any) -> None:
        count[0] += 1
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(os.path.join(dump_dir, f"snapshot-{count[0]}.bin"))
        Path(dump_dir, f"done-{count[0]}").touch()

    signal.signal(signal.SIGUSR1, dump)
    return fortrolig_main(argv)


def snapshot(pid: int, dump_dir: str, n: int) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not Path(dump_dir, f"done-{n}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the node wrote no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(os.path.join(dump_dir, f"snapshot-{n}.bin"))


def top(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, key: str, rooms: int) -> list:
    stats = after.compare_to(before, key)
    return [
        {
            "where": str(s.traceback[0]),
            "kib_per_consultation": s.size_diff / 1024 / rooms,
            "blocks_per_consultation": s.count_diff / rooms,
        }
        for s in stats[:TOP]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--out", default="/tmp/memory-profile.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fortrolig-memprof-") as tmp:
        data_dir, port = os.path.join(tmp, "data"), free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-X", "tracemalloc=10"]
        cmd += ["-m", "bench.memory_profile", "--node", tmp, "serve", "--media-workers", "1"]
        cmd += ["--data-dir", data_dir, "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, **LOAD_FROM_ONE_ADDRESS}
        with open(os.path.join(tmp, "server.log"), "wb") as log:
            server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        load = None
        try:
            deadline = time.monotonic() + 60
            while http_get(f"{base}/healthz", 1.0) is None:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the node did not start")
                time.sleep(0.3)
            time.sleep(3.0)
            idle, idle_rss = snapshot(server.pid, tmp, 1), read_memory(server.pid)
            load = start_load(base, data_dir, args.rooms, args.settle + 30, tmp + "/load.log")
            if not wait_participants(base, args.rooms * PER_ROOM, load, 120 + args.rooms):
                raise RuntimeError("the consultations did not all join")
            time.sleep(args.settle)
            held, held_rss = snapshot(server.pid, tmp, 2), read_memory(server.pid)
        finally:
            if load is not None:
                stop(load, grace_s=60.0)
            stop(server)
    assert idle_rss is not None and held_rss is not None
    traced = sum(s.size_diff for s in held.compare_to(idle, "filename")) / 1024 / args.rooms
    rss = (held_rss.rss_kib - idle_rss.rss_kib) / args.rooms
    report = {
        "rooms": args.rooms,
        "ramp_per_s": RAMP_PER_S,
        "rss_kib_per_consultation": rss,
        "traced_kib_per_consultation": traced,
        "untraced_kib_per_consultation": rss - traced,
        "by_file": top(idle, held, "filename", args.rooms),
        "by_line": top(idle, held, "lineno", args.rooms),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"Rss {rss:.0f} KiB per consultation; Python heap (tracemalloc) {traced:.0f} KiB")
    for row in report["by_file"][:15]:
        print(f"{row['kib_per_consultation']:8.1f} KiB  {row['where']}")
    print("by line:")
    for row in report["by_line"][:15]:
        print(f"{row['kib_per_consultation']:8.1f} KiB  {row['where']}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--node":
        sys.exit(node_main(sys.argv[2], sys.argv[3:]))
    sys.exit(main())

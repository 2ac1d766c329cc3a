"""Resident memory per 1:1 consultation of `fortrolig serve --media-workers 1` (and Janus).

    .venv/bin/python -m bench.memory --out docs/bench-memory.json          (`make bench-memory`)
    .venv/bin/python -m bench.memory --rooms 0,4 --repeats 1 --out /tmp/memory.json   (smoke)

For each repeat and each size N (default 0, 10, 25, 50 concurrent 1:1 consultations), a fresh
node (bench.capacity's ``start_server``: ``fortrolig serve --media-workers 1`` on 127.0.0.1,
pinned to core 1, fresh data directory, the per-address edge caps lifted because every load
participant comes from 127.0.0.1) and, for N > 0, ``fortrolig-load --engine native``
pinned to core 0 holding N rooms × 2 participants, each sending VP8 640x360@30 ~1 Mbit/s +
Opus and receiving the other's (as bench.capacity). Once the node's ``fortrolig_participants``
gauge shows all 2N, ``--settle`` seconds pass (packet caches and jitter state fill) and the
node's Rss and Pss are read from /proc/PID/smaps_rollup, summed over its process and any
children, with its open descriptors. The slope of a least-squares line over every (N, memory)
of every repeat is the memory per consultation; per repeat slopes give the spread.
``--janus`` measures Janus the same way (bench/memory_janus.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .capacity import (
    BIN,
    LOAD_FROM_ONE_ADDRESS,
    children,
    free_port,
    gauge,
    http_get,
    start_server,
    stop,
)
from .common import CLIENT_CORE, count_fds, exit_on_signal, read_memory, short_commit
from .figures import fit_line, spread
from .sfu_bench import machine

DEFAULT_ROOMS = (0, 10, 25, 50)
PER_ROOM = 2
RAMP_PER_S = 8.0
IDLE_S = 3.0
GOAL_MIB = 2.0


def node_memory(pid: int) -> dict[str, int]:
    """Rss, Pss (KiB) and descriptors summed over ``pid`` and its descendants."""
    total = {"rss_kib": 0, "pss_kib": 0, "fds": 0, "processes": 0}
    for p in [pid, *children(pid)]:
        memory = read_memory(p)
        if memory is None:
            continue
        total["rss_kib"] += memory.rss_kib
        total["pss_kib"] += memory.pss_kib
        total["fds"] += count_fds(p)
        total["processes"] += 1
    return total


def start_load(base: str, data_dir: str, rooms: int, hold_s: float, log: str) -> Any:
    cmd = ["taskset", "-c", str(CLIENT_CORE), str(BIN / "fortrolig-load")]
    cmd += ["--base-url", base, "--data-dir", data_dir, "--rooms", str(rooms)]
    cmd += ["--participants-per-room", str(PER_ROOM), "--ramp", f"{RAMP_PER_S:g}"]
    cmd += ["--duration", f"{hold_s:g}s", "--workers", "1", "--no-progress"]
    cmd += ["--engine", "native", "--out", log + ".report"]
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def wait_participants(base: str, want: int, load: Any, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and load.poll() is None:
        text = http_get(f"{base}/metrics")
        if text is not None and gauge(text, "fortrolig_participants") >= want:
            return True
        time.sleep(0.5)
    return False


def measure_size(rooms: int, args: argparse.Namespace, tmp: str, repeat: int) -> dict[str, Any]:
    """One fresh node holding ``rooms`` consultations; its memory in the steady state."""
    point: dict[str, Any] = {"server": "fortrolig", "rooms": rooms, "repeat": repeat}
    data_dir = tempfile.mkdtemp(prefix=f"data-{rooms}-", dir=tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(tmp, f"server-{rooms}-{repeat}.log")
    server = start_server(data_dir, port, log_path, env=LOAD_FROM_ONE_ADDRESS)
    load = None
    try:
        time.sleep(IDLE_S)
        if rooms:
            log = os.path.join(tmp, f"load-{rooms}-{repeat}.log")
            hold = args.settle + 10.0
            load = start_load(base, data_dir, rooms, hold, log)
            if not wait_participants(base, rooms * PER_ROOM, load, rooms * 2 / RAMP_PER_S + 60):
                raise RuntimeError(f"the node never had {rooms * PER_ROOM} participants")
            time.sleep(args.settle)
        point.update(node_memory(server.pid))
        text = http_get(f"{base}/metrics") or ""
        point["participants"] = gauge(text, "fortrolig_participants")
        point["media_peers"] = gauge(text, "fortrolig_media_peers")
    except Exception as exc:
        point["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if load is not None:
            stop(load, grace_s=60.0)
        stop(server)
    return point


def fits(points: Sequence[dict[str, Any]], server: str) -> dict[str, Any]:
    """Slopes (KiB per consultation) over all points and per repeat, for Rss, Pss and fds."""
    good = [p for p in points if p["server"] == server and "error" not in p]
    out: dict[str, Any] = {}
    for key in ("rss_kib", "pss_kib", "fds"):
        line = fit_line([p["rooms"] for p in good], [p[key] for p in good])
        marginal = fit_line(
            [p["rooms"] for p in good if p["rooms"]], [p[key] for p in good if p["rooms"]]
        )
        repeats = sorted({p["repeat"] for p in good})
        slopes = []
        for r in repeats:
            mine = [p for p in good if p["repeat"] == r]
            each = fit_line([p["rooms"] for p in mine], [p[key] for p in mine])
            if each is not None:
                slopes.append(each.slope)
        out[key] = {
            "all": None if line is None else dataclasses.asdict(line),
            "without_n0": None if marginal is None else dataclasses.asdict(marginal),
            "per_repeat_slope": spread(slopes),
        }
    return out


def table(points: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| server | N (1:1) | repeat | processes | Rss MiB | Pss MiB | fds |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if "error" in p:
            rows.append(f"| {p['server']} | {p['rooms']} | {p['repeat']} | error: {p['error']} |||")
            continue
        rows.append(
            f"| {p['server']} | {p['rooms']} | {p['repeat']} | {p['processes']} "
            f"| {p['rss_kib'] / 1024:.1f} | {p['pss_kib'] / 1024:.1f} | {p['fds']} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="docs/bench-memory.json")
    parser.add_argument("--rooms", default=",".join(map(str, DEFAULT_ROOMS)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last join")
    parser.add_argument("--janus", action="store_true", help="also Janus (bench.memory_janus)")
    parser.add_argument("--janus-rooms", default="0,2,5,10")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    sizes = [int(r) for r in args.rooms.split(",")]
    info = machine()
    info["commit"] = short_commit()
    print(f"load average at start: {info['loadavg_at_start']}", flush=True)
    started = time.monotonic()
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fortrolig-memory-") as tmp:
        for repeat in range(1, args.repeats + 1):
            for rooms in sizes:
                points.append(measure_size(rooms, args, tmp, repeat))
                print(table(points[-1:]).splitlines()[-1], flush=True)
    report: dict[str, Any] = {
        "command": "python -m bench.memory " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "settings": {**vars(args), "per_room": PER_ROOM, "ramp_per_s": RAMP_PER_S},
        "points": points,
        "fits": {"fortrolig": fits(points, "fortrolig")},
    }
    if args.janus:
        from .memory_janus import run_janus

        janus_points = run_janus([int(r) for r in args.janus_rooms.split(",")], args)
        points.extend(janus_points)
        print(table(janus_points))
        report["fits"]["janus"] = fits(points, "janus")
    report["total_s"] = time.monotonic() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(points))
    for server, fit in report["fits"].items():
        rss = fit["rss_kib"]
        if rss["all"] is not None:
            print(
                f"{server}: Rss {rss['all']['slope'] / 1024:.2f} MiB per consultation (all N; "
                f"{(rss['without_n0'] or {}).get('slope', float('nan')) / 1024:.2f} without N=0), "
                f"per repeat {rss['per_repeat_slope']}; goal < {GOAL_MIB} MiB"
            )
    print(f"\nwrote {out} in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

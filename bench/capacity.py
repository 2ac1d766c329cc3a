"""Capacity: server CPU per concurrent 1:1 consultation, and consultations per core.

    .venv/bin/python -m bench.capacity --out docs/bench-capacity.json      (`make bench-capacity`)
    .venv/bin/python -m bench.capacity --quick --out /tmp/capacity.json    (smoke: 2 rooms, 10 s)

For each size N (rooms of two participants; default 2, 4, 8, 12, 16, 20, 24, 28, 32):

* a fresh ``fortrolig serve --media-workers 1`` (signalling and the SFU in one process) on
  127.0.0.1 with a fresh data directory, started under ``taskset -c 1``;
* ``fortrolig-load`` under ``taskset -c 0`` (one worker process): N rooms × 2 participants, each
  sending the default profile (VP8 640x360@30 ~1 Mbit/s + Opus 48 kbit/s, pre-encoded) and
  receiving the other's, thresholds ``--max-loss 1% --max-join-p95 1s``;
* once the node's ``fortrolig_participants`` gauge shows all 2N participants (polled on
  /metrics during the ramp only), 3 s of settling, then the server process's utime+stime
  (/proc/PID/stat, plus any child processes) over a fixed window inside the steady state; the
  load generator's own CPU per participant comes from its report.

The fit CPU % = intercept + slope·N over the sizes where loss < 1 %, join p95 < 1 s and the
load core was under 70 % busy gives the CPU per consultation (slope) and the consultations one
server core holds ((100 − intercept) / slope; also at 80 % of the core, a margin for bursts).
The larger sizes, up to what the load generator can drive, check that projection: each point
records the fit's prediction next to the measurement. The load generator needs ~1.5-2.5 % of a
core per participant, so on a 2-core machine it, not the server, bounds the sizes that can be
driven: every point records how busy the load core was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import CLIENT_CORE, SERVER_CORE, core_busy_pct, exit_on_signal, read_core_ticks
from .sfu_bench import _fmt, machine

DEFAULT_ROOMS = (2, 4, 8, 12, 16, 20, 24, 28, 32)
# fortrolig-load connects every participant from 127.0.0.1: the node's per-address caps
# (16 WebSockets, 64 connections) are lifted for it; nothing else differs from the defaults.
LOAD_FROM_ONE_ADDRESS = {
    "FORTROLIG_EDGE__MAX_CONNECTIONS_PER_ADDRESS": "1024",
    "FORTROLIG_EDGE__MAX_WEBSOCKETS_PER_ADDRESS": "512",
}
MAX_LOAD_CORE_PCT = 70.0  # above this the load generator, not the server, may set the pace
PER_ROOM = 2
MAX_LOSS_PCT = 1.0
MAX_JOIN_P95_S = 1.0
SETTLE_S = 3.0
TAIL_S = 4.0  # the window ends this long before the load's scheduled end
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """PIDs of ``pid``'s descendants (from /proc/PID/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


def tree_cpu_s(pid: int) -> float:
    """utime+stime of ``pid`` and its live descendants, in seconds."""
    total = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def http_get(url: str, limit_s: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=limit_s) as response:
            return str(response.read().decode())
    except OSError:
        return None


def gauge(metrics: str, name: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rpartition(" ")[2])
    return total


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM to that PID, SIGKILL if it is still there after ``grace_s``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_server(
    data_dir: str,
    port: int,
    log_path: str,
    env: dict[str, str] | None = None,
    program: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``fortrolig serve --media-workers 1`` pinned to the server core, once /healthz answers.

    ``env``: extra ``FORTROLIG_*`` settings on top of this process's environment; ``program``:
    what runs instead of the ``fortrolig`` script (e.g. ``python -m bench.gc_node``)."""
    cmd = ["taskset", "-c", str(SERVER_CORE), *(program or [str(BIN / "fortrolig")]), "serve"]
    cmd += ["--media-workers", "1", "--data-dir", data_dir, "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fortrolig serve exited with {proc.returncode} (see {log_path})")
        if http_get(f"http://127.0.0.1:{port}/healthz", 1.0) is not None:
            return proc
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("fortrolig serve did not answer /healthz")


def run_size(rooms: int, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    """One size: a fresh server, one fortrolig-load run, the server's CPU in steady state."""
    point: dict[str, Any] = {"rooms": rooms, "participants": rooms * PER_ROOM}
    data_dir = tempfile.mkdtemp(prefix=f"data-{rooms}-", dir=tmp)
    out_dir = os.path.join(tmp, f"report-{rooms}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server: subprocess.Popen[bytes] | None = None
    load: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        log_path = os.path.join(tmp, f"server-{rooms}.log")
        server = start_server(data_dir, port, log_path, env=LOAD_FROM_ONE_ADDRESS)
        point["server_pid"] = server.pid
        time.sleep(1.0)
        idle_a, idle_t = tree_cpu_s(server.pid), time.monotonic()
        time.sleep(args.idle)
        point["idle_cpu_pct"] = (
            100 * (tree_cpu_s(server.pid) - idle_a) / (time.monotonic() - idle_t)
        )
        cmd = ["taskset", "-c", str(CLIENT_CORE), str(BIN / "fortrolig-load")]
        cmd += ["--base-url", base, "--data-dir", data_dir, "--rooms", str(rooms)]
        cmd += ["--participants-per-room", str(PER_ROOM), "--ramp", str(args.ramp)]
        cmd += ["--duration", f"{args.duration:g}s", "--workers", "1", "--no-progress"]
        cmd += ["--max-loss", f"{MAX_LOSS_PCT:g}%", "--max-join-p95", f"{MAX_JOIN_P95_S:g}s"]
        cmd += ["--out", out_dir, "--engine", args.engine]
        point["load_command"] = " ".join(["fortrolig-load", *cmd[4:]])
        with open(os.path.join(tmp, f"load-{rooms}.log"), "wb") as log:
            load = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        want = rooms * PER_ROOM
        deadline = time.monotonic() + want / args.ramp + 60
        full = False
        while time.monotonic() < deadline and load.poll() is None:
            metrics = http_get(f"{base}/metrics")
            if metrics is not None and gauge(metrics, "fortrolig_participants") >= want:
                full = True
                break
            time.sleep(0.5)
        if not full:
            raise RuntimeError(f"the node never had {want} participants")
        time.sleep(SETTLE_S)
        window = args.duration - SETTLE_S - TAIL_S
        cpu_a, cores_a, t_a = tree_cpu_s(server.pid), read_core_ticks(), time.monotonic()
        load_a = tree_cpu_s(load.pid)
        time.sleep(window)
        cpu_b, cores_b, t_b = tree_cpu_s(server.pid), read_core_ticks(), time.monotonic()
        load_b = tree_cpu_s(load.pid)
        wall = t_b - t_a
        point.update(
            window_s=wall,
            server_cpu_pct=100 * (cpu_b - cpu_a) / wall,
            load_process_cpu_pct=100 * (load_b - load_a) / wall,
            server_core_busy_pct=core_busy_pct(cores_a, cores_b, SERVER_CORE),
            load_core_busy_pct=core_busy_pct(cores_a, cores_b, CLIENT_CORE),
        )
        point["server_cpu_pct_per_consultation"] = point["server_cpu_pct"] / rooms
        # Side by side over the same window: the load generator's whole process tree
        # (controller and workers) against the server, each per participant it serves/simulates.
        point["server_cpu_pct_per_participant"] = point["server_cpu_pct"] / (rooms * PER_ROOM)
        point["load_cpu_pct_per_participant_window"] = point["load_process_cpu_pct"] / (
            rooms * PER_ROOM
        )
        point["engine"] = args.engine
        point["load_exit_status"] = load.wait(timeout=args.duration + 120)
        report = json.loads(Path(out_dir, "report.json").read_text())
        summary = report["summary"]
        join = summary["join_latency_s"]
        point.update(
            loss_pct=summary["loss_pct"],
            loss_pct_worst_participant=summary["loss_pct_worst_participant"],
            join_p50_s=join["p50"],
            join_p95_s=join["p95"],
            failed=summary["failed"],
            reached_media=summary["reached_media"],
            freezes=summary["freezes"],
            rtt_ms_mean=summary["rtt_ms"]["mean"],
            bitrate_kbps_mean=summary["bitrate_kbps"]["mean"],
            load_cpu_pct_per_participant=report["load_generator"]["cpu_pct_per_participant"],
            violations=report["violations"],
            server_metrics=report["server"],
        )
        point["ok"] = (
            point["failed"] == 0
            and point["loss_pct"] < MAX_LOSS_PCT
            and point["join_p95_s"] is not None
            and point["join_p95_s"] < MAX_JOIN_P95_S
        )
    except Exception as exc:
        point["error"] = f"{type(exc).__name__}: {exc}"
        point["ok"] = False
    finally:
        if load is not None:
            stop(load, grace_s=args.duration + 60)
        if server is not None:
            stop(server)
    point["elapsed_s"] = time.monotonic() - started
    return point


def fit(points: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """Least squares server CPU % = intercept + slope·rooms, and what it implies per core."""
    xs = [float(p["rooms"]) for p in points]
    ys = [float(p["server_cpu_pct"]) for p in points]
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    intercept = my - slope * mx
    return {
        "intercept_pct": intercept,
        "slope_pct_per_consultation": slope,
        "consultations_per_core_100pct": (100 - intercept) / slope if slope > 0 else None,
        "consultations_per_core_80pct": (80 - intercept) / slope if slope > 0 else None,
        "points": float(len(points)),
    }


def table(points: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| rooms (1:1) | participants | server CPU % of core 1 | % per consultation | loss % "
        "| join p50 / p95 ms | failed | load core % busy | load CPU % per participant "
        "| same window, per participant: server % / load % | ok | in fit (prediction %) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if "error" in p:
            error = f"error: {p['error']}"
            rows.append(f"| {p['rooms']} | {p['participants']} | {error} |||||||||| no |")
            continue
        join = f"{_fmt(p['join_p50_s'] * 1000, 0)} / {_fmt(p['join_p95_s'] * 1000, 0)}"
        rows.append(
            f"| {p['rooms']} | {p['participants']} | {p['server_cpu_pct']:.1f} "
            f"| {p['server_cpu_pct_per_consultation']:.2f} | {p['loss_pct']:.2f} | {join} "
            f"| {p['failed']} | {p['load_core_busy_pct']:.0f} "
            f"| {_fmt(p['load_cpu_pct_per_participant'], 2)} "
            f"| {p['server_cpu_pct_per_participant']:.3f} / "
            f"{p['load_cpu_pct_per_participant_window']:.3f} | {'yes' if p['ok'] else 'no'} "
            f"| {'yes' if p.get('in_fit') else 'no'} ({_fmt(p.get('fit_prediction_pct'))}) |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="docs/bench-capacity.json", help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="2 rooms, 10 s (smoke)")
    parser.add_argument("--rooms", default=None, help="comma-separated sizes (1:1 rooms)")
    parser.add_argument("--duration", type=float, default=None, help="steady state seconds")
    parser.add_argument("--ramp", type=float, default=4.0, help="participants started per s")
    parser.add_argument("--idle", type=float, default=3.0, help="idle server seconds measured")
    parser.add_argument(
        "--engine", choices=("native", "python"), default="native", help="fortrolig-load engine"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    sizes = [int(r) for r in args.rooms.split(",")] if args.rooms else None
    sizes = sizes or ([2] if args.quick else list(DEFAULT_ROOMS))
    if args.duration is None:
        args.duration = 10.0 if args.quick else 30.0
    if args.duration < SETTLE_S + TAIL_S + 2:
        parser.error(f"--duration must be at least {SETTLE_S + TAIL_S + 2:g}")
    started = time.monotonic()
    info = machine()
    print(f"load average at start: {info['loadavg_at_start']}", flush=True)
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fortrolig-capacity-") as tmp:
        for rooms in sizes:
            point = run_size(rooms, args, tmp)
            points.append(point)
            if "error" in point:
                print(f"{rooms:>3} rooms: ERROR {point['error']}", flush=True)
            else:
                print(
                    f"{rooms:>3} rooms: server {point['server_cpu_pct']:.1f} % "
                    f"({point['server_cpu_pct_per_consultation']:.2f} %/consultation), "
                    f"loss {point['loss_pct']:.2f} %, join p95 "
                    f"{_fmt(point['join_p95_s'] * 1000, 0)} ms, load core "
                    f"{point['load_core_busy_pct']:.0f} %, ok={point['ok']}; per participant: "
                    f"server {point['server_cpu_pct_per_participant']:.3f} %, load "
                    f"{point['load_cpu_pct_per_participant_window']:.3f} % ({args.engine})",
                    flush=True,
                )
    good = [p for p in points if p.get("ok") and p["load_core_busy_pct"] < MAX_LOAD_CORE_PCT]
    result_fit = fit(good)
    for p in points:
        p["in_fit"] = p in good
        if result_fit is not None and "server_cpu_pct" in p:
            predicted = (
                result_fit["intercept_pct"]
                + result_fit["slope_pct_per_consultation"] * (p["rooms"])
            )
            p["fit_prediction_pct"] = predicted
    report = {
        "command": "python -m bench.capacity " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "settings": {
            "rooms": sizes,
            "participants_per_room": PER_ROOM,
            "duration_s": args.duration,
            "ramp_per_s": args.ramp,
            "settle_s": SETTLE_S,
            "engine": args.engine,
        },
        "points": points,
        "fit": result_fit,
        "total_s": time.monotonic() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(points))
    if result_fit is not None:
        print(
            f"\nfit: server CPU % = {result_fit['intercept_pct']:.2f} + "
            f"{result_fit['slope_pct_per_consultation']:.3f}·rooms → "
            f"{_fmt(result_fit['consultations_per_core_100pct'], 0)} consultations per core "
            f"at 100 % ({_fmt(result_fit['consultations_per_core_80pct'], 0)} at 80 %)"
        )
    print(f"\nwrote {out} in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

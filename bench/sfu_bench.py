"""SFU forwarding cost: Fortrolig's SFU against a stock aiortc MediaRelay, in one run.

    .venv/bin/python -m bench.sfu_bench --out docs/bench-sfu.json      (what `make bench` runs)
    .venv/bin/python -m bench.sfu_bench --quick --out /tmp/bench.json  (smoke: K=1,2, 5 s)

One publisher (a pre-encoded VP8 640x360@30 ~1 Mbit/s + Opus clip replayed at real-time pace)
and K subscribers, for K = 1, 2, 4, 8. For every (server, K) a fresh server process pinned to
core 1 and a fresh client process pinned to core 0; the server's own CPU (user+sys, all its
threads) is read inside it at the start and end of a steady-state window after a warm-up.
A reference point without any server (publisher → subscriber directly) gives the latency floor
of the measurement itself. ``--profile FILE`` adds one Fortrolig K=8 point sampled by py-spy
(not used in the table: the sampler perturbs it).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .clients import ClientPlan, client_main
from .clip import AUDIO_RATE, AUDIO_SAMPLES, Clip, encode_clip
from .common import CLIENT_CORE
from .figures import fit_line
from .servers import server_main

SERVERS = ("fortrolig", "fortrolig-inline", "relay")
MIN_RATE_SHARE = 0.98
MAX_CLIENT_CORE_PCT = 70.0
VP8_PAYLOAD_PER_PACKET = 1300 - 4  # aiortc's PACKET_MAX minus the VP8 descriptor with picture id
PROFILE_TOP = 8
PROFILE_RATE_HZ = 2000
PROFILE_S = 10.0  # py-spy's duration; the profiled point's window is 1 s longer
SATURATED_PCT = 90.0


def nominal_publish_rate(clip: Clip) -> float:
    """RTP packets per second the publisher should send (aiortc's packetization of the clip)."""
    video = sum(math.ceil(len(p) / VP8_PAYLOAD_PER_PACKET) for p in clip.video) / clip.seconds
    return video + AUDIO_RATE / AUDIO_SAMPLES


def run_point(
    server: str,
    subscribers: int,
    clip_path: str,
    warmup_s: float,
    window_s: float,
    profile_path: str | None = None,
) -> dict[str, Any]:
    """One (server, K) measurement in fresh processes; every process is stopped by its PID."""
    ctx = mp.get_context("spawn")
    started = time.monotonic()
    point: dict[str, Any] = {"server": server, "k": subscribers}
    with tempfile.TemporaryDirectory(prefix="sfu-bench-") as tmp:
        socket_path = os.path.join(tmp, "control.sock") if server != "direct" else None
        server_proc: Any = None
        client_proc: Any = None
        spy: subprocess.Popen[bytes] | None = None
        try:
            if socket_path is not None:
                ready_rx, ready_tx = ctx.Pipe(duplex=False)
                server_proc = ctx.Process(
                    target=server_main, args=(server, socket_path, ready_tx), daemon=True
                )
                server_proc.start()
                if not ready_rx.poll(60):
                    raise RuntimeError("server process did not start")
                _, server_pid = ready_rx.recv()
                point["server_pid"] = server_pid
            plan = ClientPlan(server, socket_path, clip_path, subscribers, warmup_s, window_s)
            result_rx, result_tx = ctx.Pipe(duplex=False)
            client_proc = ctx.Process(target=client_main, args=(plan, result_tx), daemon=True)
            client_proc.start()
            deadline = time.monotonic() + 90 + warmup_s + window_s
            outcome: tuple[str, Any] | None = None
            while outcome is None and time.monotonic() < deadline:
                if result_rx.poll(0.25):
                    kind, payload = result_rx.recv()
                    if kind == "measuring":
                        if profile_path is not None and server_proc is not None:
                            spy = start_py_spy(server_proc.pid, PROFILE_S, profile_path)
                    else:
                        outcome = (kind, payload)
                elif not client_proc.is_alive() and not result_rx.poll(0):
                    outcome = ("error", f"client exited with code {client_proc.exitcode}")
            if outcome is None:
                outcome = ("error", "timed out")
            kind, payload = outcome
            if kind == "result" and isinstance(payload, dict):
                point.update(payload)
            else:
                point["error"] = str(payload)
        except Exception as exc:
            point["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if spy is not None:
                try:
                    spy.wait(timeout=PROFILE_S + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait(timeout=5)
            for proc in (client_proc, server_proc):
                if proc is None:
                    continue
                proc.join(timeout=15)
                if proc.is_alive():
                    proc.terminate()  # SIGTERM to that PID only
                    proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
    point["elapsed_s"] = time.monotonic() - started
    return point


def py_spy_options(output: str) -> list[str]:
    # Non-blocking: a blocking sampler stops the process at every sample, which wakes the
    # event loop and shows up as time in epoll. The server is ~95 % idle, so a high rate is
    # needed for a few hundred busy samples in 10 s; own time of a Python function includes
    # the C code it calls (SRTP in Session.__process, syscalls in sendto/_read_ready).
    rate = str(PROFILE_RATE_HZ)
    return ["--rate", rate, "--nonblocking", "--format", "raw", "--nolineno", "--output", output]


def start_py_spy(pid: int, duration_s: float, output: str) -> subprocess.Popen[bytes]:
    """py-spy on the server PID, itself pinned to the client core."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s)))]
    cmd += py_spy_options(output)
    with open(output + ".log", "wb") as log_file:
        return subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CORE}),
        )


def top_own_time(raw_path: str, top: int = PROFILE_TOP) -> dict[str, Any]:
    """Functions by own (leaf) samples from py-spy's raw (collapsed stacks) output."""
    own: Counter[str] = Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            own[stack.split(";")[-1]] += n
    return {
        "samples": total,
        "top": [
            {"function": name, "samples": n, "share_pct": 100.0 * n / total if total else 0.0}
            for name, n in own.most_common(top)
        ],
    }


def judge(point: dict[str, Any], nominal_rate: float) -> None:
    """Mark a point invalid (with reasons) when the clients, not the server, set the pace."""
    flags: list[str] = []
    if "error" in point:
        flags.append(f"error: {point['error']}")
    else:
        k = point["k"]
        ingress = point["ingress_pkt_s"]
        if ingress < MIN_RATE_SHARE * nominal_rate:
            flags.append(f"publisher sent {ingress:.1f} pkt/s < 98% of {nominal_rate:.1f}")
        if point["server"] in ("fortrolig", "fortrolig-inline", "direct"):
            expected = k * ingress
            point["expected_egress_pkt_s"] = expected
            if point["egress_pkt_s"] < MIN_RATE_SHARE * expected:
                flags.append(f"egress {point['egress_pkt_s']:.1f} pkt/s < 98% of {expected:.1f}")
        if point["video_fps_min"] < MIN_RATE_SHARE * point["video_fps_expected"]:
            flags.append(f"a subscriber got {point['video_fps_min']:.1f} video frames/s")
        if point["audio_pps_min"] < MIN_RATE_SHARE * point["audio_pps_expected"]:
            flags.append(f"a subscriber got {point['audio_pps_min']:.1f} audio packets/s")
        # /proc/stat's per-core ticks and the client's own CPU time disagree by a few % on
        # this VM (tick sampling of periodic work); either one over the limit flags the point.
        client_core = max(point["client_core_busy_pct"], point["client_cpu_pct"])
        if client_core > MAX_CLIENT_CORE_PCT:
            flags.append(f"client core {client_core:.0f}% busy")
        failures = point.get("client_failures", []) + point.get("server_failures", [])
        if failures:
            flags.append(f"failures: {failures}")
        if point.get("server_cpu_pct", 0.0) > SATURATED_PCT:
            flags.append(f"server saturated ({point['server_cpu_pct']:.0f}% of its core)")
        if "server_cpu_pct" in point:
            point["server_core_other_pct"] = point["server_core_busy_pct"] - point["server_cpu_pct"]
    point["valid"] = not flags
    point["flags"] = flags


def linear_fit(points: Sequence[dict[str, Any]]) -> dict[str, float] | None:
    """Least squares CPU % = intercept + slope·K over the valid points of one server."""
    line = fit_line([float(p["k"]) for p in points], [float(p["server_cpu_pct"]) for p in points])
    if line is None:
        return None
    intercept, slope = line.intercept, line.slope
    per_leg_pkt_s = sum(p["egress_pkt_s"] / p["k"] for p in points) / len(points)
    return {
        "intercept_pct": intercept,
        "slope_pct_per_subscriber": slope,
        "egress_pkt_s_per_subscriber": per_leg_pkt_s,
        "us_per_extra_forwarded_pkt": 1e4 * slope / per_leg_pkt_s,
        "points": float(len(points)),
    }


def git_state() -> dict[str, Any]:
    """Commit and uncommitted media files the numbers belong to (read-only git commands)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "fortrolig/media")
    return {"head": git("rev-parse", "HEAD"), "uncommitted_media": changed.splitlines()}


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for name in ("aiortc", "aioice", "av", "pylibsrtp"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git": git_state(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(points: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| server | K | egress pkt/s | SFU CPU % of a core | µs CPU per forwarded pkt "
        "| latency p50 / p99 ms | client core % | valid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if "error" in p:
            rows.append(f"| {p['server']} | {p['k']} | – | – | – | – | – | error |")
            continue
        latency = f"{_fmt(p['latency_ms_p50'])} / {_fmt(p['latency_ms_p99'])}"
        valid = "yes" if p["valid"] else "no: " + "; ".join(p["flags"])
        rows.append(
            f"| {p['server']} | {p['k']} | {p['egress_pkt_s']:.1f} "
            f"| {_fmt(p.get('server_cpu_pct'), 2)} | {_fmt(p.get('us_per_egress_pkt'), 0)} "
            f"| {latency} | {p['client_core_busy_pct']:.0f} | {valid} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="docs/bench-sfu.json", help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="K=1,2 and 5 s windows (smoke)")
    parser.add_argument("--ks", default=None, help="comma-separated subscriber counts")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=None, help="measured seconds")
    parser.add_argument("--servers", default=",".join(SERVERS), help=",".join(SERVERS))
    parser.add_argument("--no-direct", action="store_true", help="skip the latency floor")
    parser.add_argument(
        "--profile", default=None, help="also profile Fortrolig at K=8 with py-spy (raw file)"
    )
    parser.add_argument("--profile-k", type=int, default=8, help="subscribers while profiling")
    args = parser.parse_args(argv)
    default_ks = [1, 2] if args.quick else [1, 2, 4, 8]
    ks = [int(k) for k in args.ks.split(",")] if args.ks else default_ks
    window = args.window if args.window is not None else (5.0 if args.quick else 10.0)
    servers = [s for s in args.servers.split(",") if s]
    started = time.monotonic()
    command = " ".join([Path(sys.executable).name, "-m", "bench.sfu_bench", *sys.argv[1:]])

    with tempfile.TemporaryDirectory(prefix="sfu-bench-clip-") as tmp:
        clip_path = os.path.join(tmp, "clip.pickle")
        clip = encode_clip()
        clip.save(clip_path)
        nominal = nominal_publish_rate(clip)
        print(
            f"clip: VP8 {clip.video_kbps:.0f} kbit/s, Opus {clip.audio_kbps:.0f} kbit/s, "
            f"{nominal:.1f} RTP pkt/s expected from the publisher",
            flush=True,
        )
        points: list[dict[str, Any]] = []
        if not args.no_direct:
            points.append(run_point("direct", 1, clip_path, args.warmup, window))
            judge(points[-1], nominal)
            _progress(points[-1])
        for i, k in enumerate(ks):
            order = servers if i % 2 == 0 else list(reversed(servers))
            for server in order:
                points.append(run_point(server, k, clip_path, args.warmup, window))
                judge(points[-1], nominal)
                _progress(points[-1])
        profile: dict[str, Any] | None = None
        if args.profile:
            profiled = run_point(
                "fortrolig", args.profile_k, clip_path, args.warmup, PROFILE_S + 1, args.profile
            )
            judge(profiled, nominal)
            profile = {
                "point": profiled,
                "raw_file": args.profile,
                "py_spy": f"py-spy record --pid SERVER_PID --duration {PROFILE_S:.0f} "
                + " ".join(py_spy_options(args.profile)),
            }
            if os.path.exists(args.profile):
                profile.update(top_own_time(args.profile))
            _progress(profiled)

    table_points = [p for p in points if p["server"] != "direct"]
    fits = {
        s: linear_fit(
            [p for p in table_points if p["server"] == s and p["valid"] and "server_cpu_pct" in p]
        )
        for s in servers
    }
    report = {
        "command": command,
        "machine": machine(),
        "clip": {
            "video_kbps": clip.video_kbps,
            "audio_kbps": clip.audio_kbps,
            "nominal_publish_pkt_s": nominal,
        },
        "settings": {"ks": ks, "warmup_s": args.warmup, "window_s": window},
        "points": points,
        "fits": fits,
        "profile": profile,
        "total_s": time.monotonic() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(markdown_table(points))
    print()
    for server, fit in fits.items():
        if fit is None:
            print(f"fit {server}: not enough valid points")
        else:
            print(
                f"fit {server}: CPU % = {fit['intercept_pct']:.2f} + "
                f"{fit['slope_pct_per_subscriber']:.3f}·K  "
                f"(≈ {fit['us_per_extra_forwarded_pkt']:.0f} µs per extra forwarded packet)"
            )
    if profile is not None and "top" in profile:
        print(f"\npy-spy, Fortrolig K=8, {profile['samples']} samples, top by own time:")
        for row in profile["top"]:
            print(f"  {row['share_pct']:5.1f}%  {row['function']}")
    print(f"\nwrote {out} in {report['total_s']:.0f} s")
    return 0


def _progress(point: dict[str, Any]) -> None:
    if "error" in point:
        print(f"{point['server']:>9} K={point['k']}: ERROR {point['error']}", flush=True)
        return
    print(
        f"{point['server']:>9} K={point['k']}: egress {point['egress_pkt_s']:.1f} pkt/s, "
        f"server CPU {_fmt(point.get('server_cpu_pct'), 2)} %, "
        f"{_fmt(point.get('us_per_egress_pkt'), 0)} µs/pkt, latency p50/p99 "
        f"{_fmt(point['latency_ms_p50'])}/{_fmt(point['latency_ms_p99'])} ms, "
        f"client core {point['client_core_busy_pct']:.0f} %"
        + ("" if point["valid"] else f"  [INVALID: {'; '.join(point['flags'])}]"),
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())

"""Idle signaling WebSockets: one node holding 10,000, and hello → welcome for new ones meanwhile.

    .venv/bin/python -m bench.websockets --out docs/bench-websockets.json  (make bench-websockets)
    .venv/bin/python -m bench.websockets --connections 500 --hold 20 --probes 40 --repeats 1 \
        --out /tmp/ws.json                                                 (smoke)

Per repeat, a fresh ``fortrolig serve --media-workers 1`` pinned to core 1 (bench.capacity's
``start_server``) with ``edge.max_connections`` raised to hold them (12,000; every other edge cap
as shipped). "Idle signaling WebSocket" = a client in a consultation's waiting room: it has
said ``hello`` (a join token from the HTTP API), got ``welcome``, sent ``join``, got ``waiting``,
and then does only what an idle room page does (bench/ws_holders.py). Waiting clients have no
media peer (docs/protocol.md), so this is the signaling cost alone; a room's waiting list holds
at most 16, so the clients are spread over rooms of ``--per-room`` (5).

Holder processes (``--workers``, 2) pinned to core 0 open their share ``--concurrency`` at a
time, each from loopback addresses 127.10.x.y with at most 15 connections per address (the
node's ``edge.max_websockets_per_address`` is 16). Once all are open: 5 s of settling, then a
hold of ``--hold`` seconds during which this process (core 0, ahead of the holders by nice)
opens ``--probes`` new connections spaced evenly, each timed from sending ``hello`` to
receiving ``welcome`` (also from the connect call, upgrade included), then closed. The same
probes run first against the idle node (``--baseline-probes``). The node's RSS/PSS
(smaps_rollup), open descriptors, CPU (utime+stime over the hold) and /metrics gauges are read
at the start and end of the hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from fortrolig.app.fdlimit import raise_nofile_limit
from fortrolig.loadtests.cli import mint_access_token

from .capacity import free_port, gauge, http_get, start_server, stop, tree_cpu_s
from .common import (
    CLIENT_CORE,
    LOOPBACK,
    count_fds,
    exit_on_signal,
    pin_process,
    read_memory,
    short_commit,
)
from .figures import addresses_needed, percentile, spread
from .sfu_bench import machine
from .ws_holders import HolderPlan, expect, holder_main, new_token

PER_ADDRESS = 15
MAX_CONNECTIONS = 12_000
SETTLE_S = 5.0
PROBE_ADDRESS = "127.20.0.1"
GAUGES = {
    "websockets": "fortrolig_http_websockets",
    "waiting": "fortrolig_waiting_clients",
    "sessions": "fortrolig_ws_sessions",
    "rooms": "fortrolig_rooms",
    "open_fds": "fortrolig_open_fds",
    "loop_lag_s": "fortrolig_event_loop_lag_seconds",
}


async def create_rooms(base_url: str, token: str, n: int) -> list[str]:
    """``n`` rooms with a waiting room, 8 requests at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(8)
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one() -> str:
            async with gate:
                body = {"max_participants": 2, "waiting_room": True}
                async with http.post(f"{base_url}/api/v1/rooms", json=body) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 201:
                        raise RuntimeError(f"room refused: {resp.status} {data}")
                    return str(data["room_id"])

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def probe(http: aiohttp.ClientSession, base_url: str, room: str) -> dict[str, float]:
    """One new connection: token (untimed), connect, hello → welcome timed, close."""
    token = await new_token(http, base_url, room)
    connector = aiohttp.TCPConnector(local_addr=(PROBE_ADDRESS, 0), limit=1, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        ws = await session.ws_connect("ws://" + base_url.split("://", 1)[1] + "/ws")
        connected = time.perf_counter()
        await ws.send_str(json.dumps({"type": "hello", "v": 1, "token": token}))
        await expect(ws, "welcome")
        done = time.perf_counter()
        await ws.close()
    return {"hello_ms": 1000 * (done - connected), "connect_ms": 1000 * (done - started)}


async def probes(base_url: str, token: str, room: str, n: int, span_s: float) -> dict[str, Any]:
    """``n`` probes spaced evenly over ``span_s``; percentiles of both timings."""
    hello: list[float] = []
    connect: list[float] = []
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers) as http:
        for i in range(n):
            await asyncio.sleep(max(0.0, started + i * span_s / n - time.monotonic()))
            try:
                one = await probe(http, base_url, room)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            hello.append(one["hello_ms"])
            connect.append(one["connect_ms"])
    return {
        "n": len(hello),
        "errors": errors,
        **{f"hello_ms_p{q}": percentile(hello, q) for q in (50, 95, 99)},
        "hello_ms_max": max(hello) if hello else None,
        **{f"connect_ms_p{q}": percentile(connect, q) for q in (50, 95, 99)},
    }


def node_reading(pid: int, base_url: str) -> dict[str, Any]:
    memory = read_memory(pid)
    text = http_get(base_url + "/metrics", 10.0) or ""
    return {
        "rss_kib": memory.rss_kib if memory else None,
        "pss_kib": memory.pss_kib if memory else None,
        "fds": count_fds(pid),
        "cpu_s": tree_cpu_s(pid),
        "t": time.monotonic(),
        **{k: gauge(text, name) if text else None for k, name in GAUGES.items()},
    }


def node_log_lines(path: str, needle: str, limit: int = 3) -> list[str]:
    with open(path, errors="replace") as f:
        return [line.strip() for line in f if needle in line][:limit]


def start_holders(
    args: argparse.Namespace, base_url: str, token: str, rooms: list[str]
) -> list[tuple[mp.process.BaseProcess, Connection]]:
    per_room = [rooms[i // args.per_room] for i in range(args.connections)]
    share = -(-args.connections // args.workers)
    ctx = mp.get_context("spawn")
    out = []
    for w in range(args.workers):
        mine = per_room[w * share : (w + 1) * share]
        first = addresses_needed(w * share, PER_ADDRESS)
        plan = HolderPlan(
            w, base_url, token, tuple(mine), first, PER_ADDRESS, args.concurrency,
            lifetime_s=args.hold + 600, app_ping_s=args.app_ping,
        )  # fmt: skip
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=holder_main, args=(plan, child), daemon=True)
        proc.start()
        out.append((proc, parent))
    return out


def receive_all(holders: list[tuple[Any, Connection]], kind: str, limit_s: float) -> list[Any]:
    results = []
    deadline = time.monotonic() + limit_s
    for proc, conn in holders:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"holder {proc.pid} sent no {kind} in time")
        tag, body = conn.recv()
        if tag != kind:
            raise RuntimeError(f"holder {proc.pid}: {tag} {body}")
        results.append(body)
    return results


def hold_and_probe(args: argparse.Namespace, pid: int, base: str, token: str, room: str) -> Any:
    time.sleep(SETTLE_S)
    before = node_reading(pid, base)
    probed = asyncio.run(probes(base, token, room, args.probes, args.hold))
    after = node_reading(pid, base)
    window = after["t"] - before["t"]
    return before, after, probed, 100 * (after["cpu_s"] - before["cpu_s"]) / window


def run_repeat(args: argparse.Namespace, tmp: str, repeat: int) -> dict[str, Any]:
    """One fresh node: baseline probes, open the connections, hold and probe, close."""
    data_dir = tempfile.mkdtemp(prefix=f"data-{repeat}-", dir=tmp)
    log_path = os.path.join(tmp, f"server-{repeat}.log")
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    env = {"FORTROLIG_EDGE__MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    point: dict[str, Any] = {"repeat": repeat, "connections_wanted": args.connections}
    program = [sys.executable, "-m", "bench.gc_node"] if args.gc_log else []
    server = start_server(data_dir, port, log_path, env=env, program=program)
    holders: list[tuple[Any, Connection]] = []
    try:
        token = mint_access_token(Path(data_dir), None, 3600)
        rooms = asyncio.run(create_rooms(base, token, -(-args.connections // args.per_room) + 1))
        probe_room = rooms.pop()
        point["idle_node"] = node_reading(server.pid, base)
        point["baseline_probes"] = asyncio.run(
            probes(base, token, probe_room, args.baseline_probes, args.baseline_probes * 0.1)
        )
        started = time.monotonic()
        holders = start_holders(args, base, token, rooms)
        point["opened"] = receive_all(holders, "opened", args.open_limit)
        point["open_s"] = time.monotonic() - started
        before, after, probed, cpu = hold_and_probe(args, server.pid, base, token, probe_room)
        point.update(hold_start=before, hold_end=after, probes=probed, hold_cpu_pct=cpu)
        for _, conn in holders:
            conn.send("stop")
        point["held"] = receive_all(holders, "held", 60.0)
        point["held_open"] = sum(h["open"] for h in point["held"])
        point["dropped"] = sum(sum(h["dropped_while_held"].values()) for h in point["held"])
        point["fd_limit_log"] = node_log_lines(log_path, "open-file limit")
        if args.gc_log:
            point["gc_log"] = node_log_lines(log_path, "gc: ", limit=1000)
    except Exception as exc:
        point["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for proc, _ in holders:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        stop(server, grace_s=30.0)
    return point


def summary(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    good = [p for p in points if "error" not in p]

    def over(f: Any) -> dict[str, float] | None:
        return spread([float(f(p)) for p in good])

    kib = 1024.0
    return {
        "repeats": len(good),
        "held_open": over(lambda p: p["held_open"]),
        "dropped": over(lambda p: p["dropped"]),
        "open_s": over(lambda p: p["open_s"]),
        "hello_ms_p50": over(lambda p: p["probes"]["hello_ms_p50"]),
        "hello_ms_p95": over(lambda p: p["probes"]["hello_ms_p95"]),
        "hello_ms_p99": over(lambda p: p["probes"]["hello_ms_p99"]),
        "connect_ms_p99": over(lambda p: p["probes"]["connect_ms_p99"]),
        "baseline_hello_ms_p99": over(lambda p: p["baseline_probes"]["hello_ms_p99"]),
        "rss_mib_held": over(lambda p: p["hold_end"]["rss_kib"] / kib),
        "rss_mib_idle": over(lambda p: p["idle_node"]["rss_kib"] / kib),
        "kib_per_connection": over(
            lambda p: (p["hold_end"]["rss_kib"] - p["idle_node"]["rss_kib"]) / p["held_open"]
        ),
        "fds_held": over(lambda p: p["hold_end"]["fds"]),
        "hold_cpu_pct": over(lambda p: p["hold_cpu_pct"]),
        "loop_lag_ms_end": over(lambda p: 1000 * (p["hold_end"]["loop_lag_s"] or 0.0)),
    }


def markdown(points: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| repeat | held (dropped) | open s | hello→welcome p50 / p95 / p99 / max ms "
        "| idle node p99 ms | node RSS idle → held MiB | KiB per conn | fds | node CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        if "error" in p:
            rows.append(f"| {p['repeat']} | error: {p['error']} ||||||||")
            continue
        q, b = p["probes"], p["baseline_probes"]
        idle, held = p["idle_node"]["rss_kib"], p["hold_end"]["rss_kib"]
        rows.append(
            f"| {p['repeat']} | {p['held_open']} ({p['dropped']}) | {p['open_s']:.0f} "
            f"| {q['hello_ms_p50']:.1f} / {q['hello_ms_p95']:.1f} / {q['hello_ms_p99']:.1f} / "
            f"{q['hello_ms_max']:.1f} | {b['hello_ms_p99']:.1f} | {idle / 1024:.0f} → "
            f"{held / 1024:.0f} | {(held - idle) / p['held_open']:.1f} | {p['hold_end']['fds']} "
            f"| {p['hold_cpu_pct']:.1f} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="docs/bench-websockets.json")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--per-room", type=int, default=5, help="waiting clients per room (<=16)")
    parser.add_argument("--workers", type=int, default=2, help="holder processes")
    parser.add_argument("--concurrency", type=int, default=32, help="opens in flight per holder")
    parser.add_argument("--hold", type=float, default=100.0, help="seconds held while probing")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--baseline-probes", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--app-ping", type=float, default=10.0, help="holders' ping period, s (0: none)"
    )
    parser.add_argument("--open-limit", type=float, default=300.0, help="seconds to open all")
    parser.add_argument(
        "--gc-log", action="store_true", help="node through bench.gc_node: its GC pauses"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.per_room <= 16:
        parser.error("--per-room must be in 1..16 (the waiting list holds 16)")
    signal.signal(signal.SIGTERM, exit_on_signal)
    pin_process(CLIENT_CORE)
    raise_nofile_limit(1024)
    info = machine()
    info["commit"] = short_commit()
    print(f"load average at start: {info['loadavg_at_start']}", flush=True)
    started = time.monotonic()
    points = []
    with tempfile.TemporaryDirectory(prefix="fortrolig-ws-") as tmp:
        for repeat in range(1, args.repeats + 1):
            point = run_repeat(args, tmp, repeat)
            points.append(point)
            print(markdown([point]).splitlines()[-1], flush=True)
    report = {
        "command": "python -m bench.websockets " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": info,
        "settings": {**vars(args), "per_address": PER_ADDRESS, "max_connections": MAX_CONNECTIONS},
        "points": points,
        "summary": summary(points),
        "total_s": time.monotonic() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(markdown(points))
    print(json.dumps(report["summary"], indent=1))
    print(f"\nwrote {out} in {report['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

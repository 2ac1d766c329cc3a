"""Janus's resident memory per 1:1 consultation, measured as bench.memory measures Fortrolig.

Run by ``bench.memory --janus`` (root, Debian's janus): bench.janus_bench's network namespace
(Janus's libnice does not complete ICE on 127.0.0.x), then inside it, per repeat and size N,
a fresh ``janus -C bench/janus/janus.jcfg`` pinned to core 1 and one client process on core 0
with N consultations: a VideoRoom room each (created over the HTTP API, 2 publishers), two
participants each publishing bench.clients' pre-encoded clip (VP8 640x360@30 ~1 Mbit/s +
Opus, the same profile as fortrolig-load's default) and one subscriber handle per published feed,
i.e. the same 2 publishers + 2 subscriptions a 1:1 consultation is. Subscribers count packets
without decoding. Once every subscriber receives video, ``--settle`` seconds pass and Janus's
Rss/Pss (smaps_rollup) and descriptors are read.

The client is aiortc in Python (~2 % of a core per publisher), so the sizes are smaller than
Fortrolig's (default 0, 2, 5, 10): the slope is what is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from .clients import ClientPlan
from .clip import Clip, encode_clip
from .common import CLIENT_CORE, ice_host_only, pin_process
from .janus_bench import (
    CLIENT_ADDR,
    JANUS_URL,
    NS_PREFIX,
    JanusApi,
    JanusSide,
    cleanup_stale_namespaces,
    create_namespace,
    delete_namespace,
    start_janus,
    stop_pids,
)
from .memory import node_memory

FIRST_ROOM = 5000
HOLD_LIMIT_S = 600.0


class ConsultationSide(JanusSide):
    """One participant of a 1:1 consultation on Janus: its publisher and one subscription."""

    def __init__(self, room: int, clip: Clip, conn: Connection, janus_pid: int) -> None:
        plan = ClientPlan("janus", None, "", 1, 0.0, 0.0)
        super().__init__(plan, clip, conn, janus_pid)
        self.room = room


async def create_room(room: int) -> None:
    """A VideoRoom room for one consultation (2 publishers), over a short-lived session."""
    api = JanusApi(JANUS_URL)
    try:
        await api.create()
        handle = await api.attach()
        body = {
            "request": "create",
            "room": room,
            "publishers": 2,
            "bitrate": 0,
            "fir_freq": 0,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "record": False,
            "notify_joining": False,
        }
        await api.message(handle, body)
    finally:
        await api.close()


async def _hold(rooms: int, clip_path: str, janus_pid: int, conn: Connection) -> None:
    clip = Clip.load(clip_path)
    for i in range(rooms):
        await create_room(FIRST_ROOM + i)
    sides = [ConsultationSide(FIRST_ROOM + i // 2, clip, conn, janus_pid) for i in range(2 * rooms)]
    try:
        await asyncio.gather(*(s.setup_through_server() for s in sides))
        await asyncio.gather(*(s.wait_flowing() for s in sides))
        conn.send(("flowing", None))
        await asyncio.get_running_loop().run_in_executor(None, conn.poll, HOLD_LIMIT_S)
    finally:
        await asyncio.gather(*(s.close() for s in sides), return_exceptions=True)


def client_main(rooms: int, clip_path: str, janus_pid: int, conn: Connection) -> None:
    pin_process(CLIENT_CORE)
    ice_host_only(CLIENT_ADDR)
    try:
        asyncio.run(_hold(rooms, clip_path, janus_pid, conn))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def measure(rooms: int, repeat: int, clip_path: str, settle_s: float, tmp: str) -> dict[str, Any]:
    point: dict[str, Any] = {"server": "janus", "rooms": rooms, "repeat": repeat}
    janus = start_janus("janus", os.path.join(tmp, f"janus-{rooms}-{repeat}.log"))
    client = None
    try:
        time.sleep(3.0)
        if rooms:
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            client = ctx.Process(target=client_main, args=(rooms, clip_path, janus.pid, child))
            client.start()
            if not parent.poll(60 + 5 * rooms):
                raise RuntimeError("the consultations did not flow in time")
            kind, body = parent.recv()
            if kind != "flowing":
                raise RuntimeError(str(body))
            time.sleep(settle_s)
        point.update(node_memory(janus.pid))
        if client is not None:
            parent.send("stop")
    except Exception as exc:
        point["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            client.join(timeout=30)
            if client.is_alive():
                stop_pids([client.pid])
        stop_pids([janus.pid], grace_s=10.0)
    return point


def inner_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--settle", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    points = []
    with tempfile.TemporaryDirectory(prefix="memory-janus-") as tmp:
        clip_path = os.path.join(tmp, "clip.bin")
        encode_clip().save(clip_path)
        for repeat in range(1, args.repeats + 1):
            for rooms in [int(r) for r in args.rooms.split(",")]:
                points.append(measure(rooms, repeat, clip_path, args.settle, tmp))
                print(f"janus N={rooms} repeat {repeat}: {points[-1]}", flush=True)
    with open(args.out, "w") as f:
        json.dump(points, f)
    return 0


def run_janus(rooms: Sequence[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The Janus points, measured inside a namespace that is deleted afterwards."""
    if os.geteuid() != 0 or not os.access("/usr/bin/janus", os.X_OK):
        return [{"server": "janus", "rooms": 0, "repeat": 0, "error": "needs root and janus"}]
    cleanup_stale_namespaces()
    ns = f"{NS_PREFIX}{os.getpid()}"
    inner = None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        try:
            create_namespace(ns)
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.memory_janus"]
            cmd += ["--rooms", ",".join(map(str, rooms)), "--repeats", str(args.repeats)]
            cmd += ["--settle", f"{args.settle:g}", "--out", out.name]
            inner = subprocess.Popen(cmd)
            inner.wait()
        finally:
            if inner is not None and inner.poll() is None:
                stop_pids([inner.pid], grace_s=20.0)
            delete_namespace(ns)
        try:
            points: list[dict[str, Any]] = json.load(open(out.name))
        except ValueError as exc:
            return [{"server": "janus", "rooms": 0, "repeat": 0, "error": f"no result: {exc}"}]
    return points


if __name__ == "__main__":
    sys.exit(inner_main(sys.argv[1:]))

"""Leak hunt for the soak: the node under tracemalloc, the soak's consultations beside it.

    .venv/bin/python -m bench.soak_trace --warm 3 --rounds 10

The node is built in this process (``build_app`` with ``media.workers = 1``: the SFU inside the
signaling process, data in a temporary directory, ICE on 127.0.0.1 only) and served on a free
loopback port; bench/soak_clients.py's consultations run against it from a child process (the
SFU's aiortc hooks are process-wide: client peers in the node's process get no media),
``--concurrency`` at a time,
``--warm`` rounds first, then ``--rounds`` more. After the warm-up and at the end: a full
``gc.collect()``, a tracemalloc snapshot, the count of live objects by type and the process's
anonymous RSS. Printed: the allocation sites (by line, 30 frames kept) that grew most between the
two, for the node's code (any frame in ``fortrolig/`` outside ``loadtests``) and overall; the types
whose live count grew; and anonymous RSS growth against the growth tracemalloc can see (what it
cannot see is native memory: the C data plane, OpenSSL, libsrtp, libvpx, or the allocator's
fragmentation).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import socket
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from fortrolig.app.server import build_app
from fortrolig.core.config import load_config
from fortrolig.loadtests.cli import mint_access_token
from fortrolig.loadtests.worker import restrict_ice

from .common import LOOPBACK
from .soak import PROFILE
from .soak_clients import Api, Consultation, Plan, Tally


def rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def type_counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def checkpoint() -> tuple[tracemalloc.Snapshot, Counter[str], int]:
    gc.collect()
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)  # an empty snapshot: only the object counts and RSS then
    return tracemalloc.take_snapshot(), type_counts(), rss_anon_kib()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def clients_main(args: argparse.Namespace, base: str, token: str, conn: Connection) -> None:
    """Child process: the consultations (the SFU's aiortc hooks must not touch these peers)."""
    restrict_ice(LOOPBACK)
    asyncio.run(_clients(args, base, token, conn))


async def _clients(args: argparse.Namespace, base: str, token: str, conn: Connection) -> None:
    from fortrolig.loadtests.cli import default_cache_dir
    from fortrolig.loadtests.clip import cached_clip

    _, clip, _ = cached_clip(PROFILE, default_cache_dir())
    tally = Tally()
    never = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        api = Api(http, base, token)
        journal = tuple([await api.new_journal_client(f"Spor {i}") for i in range(4)])
        plan = Plan(base, token, journal, call_s=args.call_s, chats=2, reconnect_every=2)
        index = 0
        for r in range(args.warm + args.rounds):
            if r == args.warm:
                conn.send(("warm", tally.to_dict()))
                await loop.run_in_executor(None, conn.recv)
            batch = []
            for _ in range(args.concurrency):
                index += 1
                batch.append(Consultation(plan, api, clip, tally, index).run(never))
            await asyncio.gather(*batch)
            print(f"round {r + 1}: done {tally.consultations_done}, errors {dict(tally.errors)}")
            for line in tally.error_samples[-2:]:
                print("   ", line, flush=True)
    conn.send(("done", tally.to_dict()))


async def run(args: argparse.Namespace, data_dir: Path) -> None:
    port = free_port()
    overrides: dict[str, Any] = {
        "server.data_dir": data_dir,
        "server.host": LOOPBACK,
        "server.port": port,
        "media.workers": 1,
    }
    config = load_config(None, {}, overrides)
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    base = f"http://{LOOPBACK}:{port}"
    token = mint_access_token(data_dir, None, 3600)
    loop = asyncio.get_running_loop()
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(
        target=clients_main, args=(args, base, token, theirs)
    )
    child.start()
    try:
        kind, _ = await loop.run_in_executor(None, ours.recv)
        assert kind == "warm"
        await asyncio.sleep(2)  # the last calls' peers close
        first = checkpoint()
        ours.send("go")
        kind, tally = await loop.run_in_executor(None, ours.recv)
        await asyncio.sleep(2)
        last = checkpoint()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
        await runner.cleanup()
    print("clients:", {k: v for k, v in tally.items() if k != "error_samples"})
    report(first, last, args.rounds * args.concurrency, args.top)


def report(
    first: tuple[tracemalloc.Snapshot, Counter[str], int],
    last: tuple[tracemalloc.Snapshot, Counter[str], int],
    consultations: int,
    top: int,
) -> None:
    (s1, c1, r1), (s2, c2, r2) = first, last
    node = [
        tracemalloc.Filter(True, "*/fortrolig/*", all_frames=True),
        tracemalloc.Filter(False, "*/fortrolig/loadtests/*", all_frames=True),
        tracemalloc.Filter(False, "*/bench/*", all_frames=True),
        tracemalloc.Filter(False, tracemalloc.__file__),
    ]
    traced = sum(s.size for s in s2.statistics("filename")) - sum(
        s.size for s in s1.statistics("filename")
    )
    print(f"\nafter {consultations} consultations past the warm-up:")
    print(
        f"anonymous RSS {r1} → {r2} KiB ({r2 - r1:+d} KiB, {(r2 - r1) / consultations:+.1f}/each)"
    )
    print(
        f"traced by tracemalloc: {traced / 1024:+.0f} KiB "
        f"({traced / 1024 / consultations:+.1f}/each)"
    )
    for title, filters in (("node code (fortrolig/, not loadtests)", node), ("everything", [])):
        a, b = s1.filter_traces(filters), s2.filter_traces(filters)
        diff = b.compare_to(a, "lineno")
        print(f"\ntop growth, {title}:")
        for stat in diff[:top]:
            print(
                f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks "
                f" {stat.traceback}"
            )
    grew = {t: c2[t] - c1[t] for t in c2 if c2[t] - c1[t] > 0}
    print("\nlive objects by type that grew:")
    for t, n in sorted(grew.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {n:+7d} {t} ({c1[t]} → {c2[t]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--warm", type=int, default=3, help="rounds before the first snapshot")
    parser.add_argument("--rounds", type=int, default=10, help="rounds measured")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--call-s", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--frames", type=int, default=30, help="tracemalloc frames (0: off)")
    args = parser.parse_args()
    if args.frames > 0:
        tracemalloc.start(args.frames)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fortrolig-soak-trace-") as tmp:
        asyncio.run(run(args, Path(tmp) / "data"))
    print(f"\n{time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

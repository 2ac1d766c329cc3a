"""Journal benchmark: note write and read throughput and p50/p99 latency, with encryption.

    python -m bench.journal_bench --out docs/bench-journal.json [--notes 2000] [--reads 200]

Runs the real service (AES-256-GCM sealing, audit chain, durable commits) on SQLite in a temporary
directory (WAL, synchronous=FULL) and on a temporary PostgreSQL (fsync on, synchronous_commit on).
Writes are sequential ``add_note`` calls of ~1 KB; reads are ``read_journal`` of a whole client
journal (every note decrypted), reported per call and per note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import SystemClock
from fortrolig.core.principal import Principal
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store
from tests.support.postgres_server import TempPostgres

WHO = Principal("prac_bench", "practitioner")
CLIENTS = 20
TEXT = ("Klienten fortæller om søvnbesvær og øget uro; vi aftaler øvelser. " * 16)[:1000]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(latencies: list[float], elapsed: float, items: int) -> dict[str, float]:
    return {
        "calls": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "items_per_second": round(items / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


async def _timed(calls: list[Callable[[], Awaitable[int]]]) -> dict[str, float]:
    latencies: list[float] = []
    items = 0
    start = time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        items += await call()
        latencies.append(time.perf_counter() - t0)
    return _summary(latencies, time.perf_counter() - start, items)


async def bench_backend(url: str, keyring: Path, notes: int, reads: int) -> dict[str, Any]:
    """Write ``notes`` notes over CLIENTS clients, then ``reads`` whole-journal reads."""
    service = JournalService(open_store(url), FileKeyring.open(keyring), SystemClock())
    await service.start()
    try:
        ids = [(await service.create_client(WHO, f"Klient {i}")).id for i in range(CLIENTS)]
        rng = random.Random(1)

        def writer(cid: str) -> Callable[[], Awaitable[int]]:
            async def call() -> int:
                await service.add_note(WHO, cid, TEXT)
                return 1

            return call

        def reader(cid: str) -> Callable[[], Awaitable[int]]:
            async def call() -> int:
                return len((await service.read_journal(WHO, cid, "care")).notes)

            return call

        write = await _timed([writer(ids[i % CLIENTS]) for i in range(notes)])
        read = await _timed([reader(rng.choice(ids)) for _ in range(reads)])
        return {"write_note": write, "read_journal": read, "notes_per_journal": notes // CLIENTS}
    finally:
        await service.close()


async def run(notes: int, reads: int) -> dict[str, Any]:
    """Both backends, one after the other on the same machine."""
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "note_bytes": len(TEXT.encode()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results["sqlite"] = await bench_backend(
            f"sqlite:///{folder / 'journal.db'}", folder / "k1", notes, reads
        )
        pg = TempPostgres(durable=True)
        pg.start()
        try:
            results["postgresql"] = await bench_backend(pg.dsn, folder / "k2", notes, reads)
        finally:
            pg.stop()
    return results


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    results = asyncio.run(run(args.notes, args.reads))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for backend in ("sqlite", "postgresql"):
        for op in ("write_note", "read_journal"):
            r = results[backend][op]
            print(
                f"{backend:10} {op:12} {r['per_second']:>9}/s {r['items_per_second']:>10} notes/s "
                f"p50 {r['p50_ms']:>8} ms  p99 {r['p99_ms']:>8} ms"
            )


if __name__ == "__main__":
    main()

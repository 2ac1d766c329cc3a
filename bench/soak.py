"""Soak: synthetic consultations for a long time; memory, descriptors, tasks, threads over time.

    .venv/bin/python -m bench.soak --out docs/bench-soak.json              (`make soak`, 1 h)
    .venv/bin/python -m bench.soak --duration 120 --interval 10 --out /tmp/soak.json  (smoke)

One ``fortrolig serve`` on embedded defaults (SQLite in a temporary data directory, in-process
coordination, its media workers; ICE host address 127.0.0.1 only, no STUN or TURN) serves
``--concurrency`` lanes of consultations for ``--duration`` seconds. Each lane runs one
consultation after another (bench/soak_clients.py): room with a waiting room, practitioner
joins, client waits and is admitted, media both ways (fortrolig-load's pre-encoded clip, never
decoded), chat, a mid-call reconnect (resume) on every ``--reconnect-every``-th, a journal note
over the journal API, leave or end_room; then a new room. Every ``--interval`` seconds the node's
signaling process and each media worker child are read from /proc (RSS, fds, threads) and the
node's /metrics (``fortrolig_asyncio_tasks``). The report (``--out``) holds every sample, the
counts, the errors and the verdict (bench/soak_summary.py): each resource's growth from the end
of the warm-up to the end of the run must stay under ``--limit-pct`` (10 %) and no consultation
may fail; otherwise the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

import aiohttp

from fortrolig.loadtests.cli import default_cache_dir, mint_access_token
from fortrolig.loadtests.clip import Clip, MediaProfile, cached_clip
from fortrolig.loadtests.worker import restrict_ice
from fortrolig.signaling.service import ROOM_IDLE_S

from .capacity import free_port, http_get, stop
from .common import LOOPBACK, exit_on_signal
from .sfu_bench import machine
from .soak_clients import Api, Consultation, Plan, Tally
from .soak_probe import RESOURCES, sample, series
from .soak_summary import GROWTH_LIMIT_PCT, format_summary, summarize

BIN = Path(sys.executable).parent
# Small, cheap media: the soak looks for leaks in the node, not for its bandwidth.
PROFILE = MediaProfile(width=320, height=240, fps=15, video_bitrate=300_000, seconds=10)
NODE_ENV = {
    "FORTROLIG_MEDIA__ICE_HOST_ADDRESSES": LOOPBACK,  # the default, said out loud
    "FORTROLIG_MEDIA__STUN_URLS": "",
    "FORTROLIG_MEDIA__TURN_URLS": "",
}
STOP_GRACE_S = 20.0
# The node keeps a room nobody is in for ROOM_IDLE_S (5 min) before it unloads it: until the
# first rooms have been unloaded the node's state grows by design, so the warm-up cut is never
# shorter than that plus a minute (unless --warmup-s says otherwise).
WARMUP_FLOOR_S = ROOM_IDLE_S + 60.0
JOURNAL_CLIENTS = 8  # the practitioner's clients; each consultation notes into one of them


def start_node(data_dir: Path, port: int, log_path: Path, workers: int | None) -> Any:
    """``fortrolig serve`` on 127.0.0.1:port, ready (/healthz answers) within 60 s."""
    cmd = [str(BIN / "fortrolig"), "serve", "--data-dir", str(data_dir), "--host", LOOPBACK]
    cmd += ["--port", str(port)]
    if workers is not None:
        cmd += ["--media-workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORTROLIG_")}
    env.update(NODE_ENV)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fortrolig serve exited with {proc.returncode} (see {log_path})")
        if http_get(f"http://{LOOPBACK}:{port}/readyz", 1.0) is not None:
            return proc
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError("fortrolig serve did not become ready")


class Soak:
    """The churn lanes and the sampler, all bounded by the run's deadline."""

    def __init__(self, args: argparse.Namespace, base_url: str, pid: int, clip: Clip) -> None:
        self.args, self.base_url, self.pid, self.clip = args, base_url, pid, clip
        self.tally = Tally()
        self.samples: list[dict[str, Any]] = []
        self.stop = asyncio.Event()
        self.started = 0.0
        self._next_index = 0

    def _index(self) -> int:
        self._next_index += 1
        return self._next_index

    async def run(self, data_dir: Path) -> None:
        token = mint_access_token(data_dir, None, self.args.duration + 600)
        async with aiohttp.ClientSession() as http:
            api = Api(http, self.base_url, token)
            journal = [
                await api.new_journal_client(f"Soak klient {i}") for i in range(JOURNAL_CLIENTS)
            ]
            plan = Plan(
                self.base_url,
                token,
                tuple(journal),
                call_s=self.args.call_s,
                chats=self.args.chats,
                reconnect_every=self.args.reconnect_every,
            )
            self.started = time.monotonic()
            lanes = [self._lane(plan, api, lane) for lane in range(self.args.concurrency)]
            await asyncio.gather(self._sampler(), self._deadline(), *lanes)

    async def _deadline(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.args.duration)
        self.stop.set()

    async def _lane(self, plan: Plan, api: Api, lane: int) -> None:
        # Lanes start staggered so that joins and leaves spread over the call length.
        stagger = lane * self.args.call_s / max(1, self.args.concurrency)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), stagger)
        failures_in_a_row = 0
        while not self.stop.is_set():
            ok = await Consultation(plan, api, self.clip, self.tally, self._index()).run(self.stop)
            failures_in_a_row = 0 if ok else failures_in_a_row + 1
            if failures_in_a_row >= self.args.max_failures_in_a_row:
                self.tally.error("lane", RuntimeError(f"lane {lane}: too many failures, stopped"))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.pause_s)

    async def _sampler(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = time.monotonic() - self.started
            reading = await loop.run_in_executor(None, sample, self.pid, self.base_url, t)
            reading["tally"] = {
                "consultations_done": self.tally.consultations_done,
                "errors": sum(self.tally.errors.values()),
            }
            self.samples.append(reading)
            self._print(reading)
            if self.stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.interval)

    def _print(self, s: dict[str, Any]) -> None:
        print(
            f"t={s['t_s']:7.0f}s rss={s.get('rss_kib', 0) / 1024:6.1f}MiB fds={s.get('fds')} "
            f"threads={s.get('threads')} tasks={s['asyncio_tasks']:.0f} "
            f"workers rss={s['workers_rss_kib'] / 1024:6.1f}MiB fds={s['workers_fds']} "
            f"threads={s['workers_threads']} tasks={s['workers_asyncio_tasks']:.0f} "
            f"| participants={s['participants']:.0f} "
            f"done={s['tally']['consultations_done']} errors={s['tally']['errors']}",
            flush=True,
        )


def build_report(args: argparse.Namespace, soak: Soak, info: dict[str, Any]) -> dict[str, Any]:
    all_series = series(soak.samples)
    if not any(s.get("worker_pids") for s in soak.samples):  # media inside the signaling process
        all_series = {k: v for k, v in all_series.items() if not k.startswith("workers_")}
    worker_sets = {tuple(s.get("worker_pids", [])) for s in soak.samples}
    tally = soak.tally.to_dict()
    summary = summarize(
        all_series,
        args.duration,
        warmup_s=args.warmup_s,
        warmup_frac=args.warmup_frac,
        warmup_floor_s=WARMUP_FLOOR_S,
        limit_pct=args.limit_pct,
        errors=tally["error_count"],
    )
    summary["worker_pid_sets"] = [list(w) for w in sorted(worker_sets)]
    return {
        "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
        "machine": info,
        "settings": {
            k: getattr(args, k)
            for k in (
                "duration",
                "interval",
                "concurrency",
                "call_s",
                "chats",
                "reconnect_every",
                "pause_s",
                "warmup_s",
                "warmup_frac",
                "limit_pct",
                "media_workers",
            )
        }
        | {"media_profile": PROFILE.__dict__, "resources": RESOURCES},
        "counts": tally,
        "summary": summary,
        "samples": soak.samples,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of churn")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=4, help="consultations at a time")
    parser.add_argument("--call-s", type=float, default=45.0, help="length of each call")
    parser.add_argument("--chats", type=int, default=4, help="chat lines per side per call")
    parser.add_argument(
        "--reconnect-every", type=int, default=2, help="every n-th client reconnects (0: none)"
    )
    parser.add_argument("--pause-s", type=float, default=2.0, help="pause between calls")
    parser.add_argument("--warmup-s", type=float, default=None, help="warm-up cut in seconds")
    parser.add_argument(
        "--warmup-frac",
        type=float,
        default=0.1,
        help=f"warm-up cut as a share of --duration (at least {WARMUP_FLOOR_S:g} s)",
    )
    parser.add_argument("--limit-pct", type=float, default=GROWTH_LIMIT_PCT)
    parser.add_argument(
        "--media-workers", type=int, default=None, help="node's media workers (default: its own)"
    )
    parser.add_argument("--max-failures-in-a-row", type=int, default=5)
    parser.add_argument("--out", default="docs/bench-soak.json", help="JSON report")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.interval <= 0 or args.concurrency < 1:
        parser.error("--duration and --interval must be positive, --concurrency at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    restrict_ice(LOOPBACK)
    info = machine()
    _, clip, _ = cached_clip(PROFILE, default_cache_dir())
    node = None
    soak: Soak | None = None
    with tempfile.TemporaryDirectory(prefix="fortrolig-soak-") as tmp:
        try:
            port = free_port()
            data_dir = Path(tmp) / "data"
            node = start_node(data_dir, port, Path(tmp) / "node.log", args.media_workers)
            soak = Soak(args, f"http://{LOOPBACK}:{port}", node.pid, clip)
            asyncio.run(soak.run(data_dir))
        except (KeyboardInterrupt, SystemExit) as exc:
            print(f"interrupted ({exc!r}): stopping the node", file=sys.stderr)
        finally:
            if node is not None:
                stop(node, STOP_GRACE_S)
                print(f"node exited with {node.returncode}", flush=True)
                log = Path(tmp) / "node.log"
                tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
                node_log_tail = tail
            else:
                node_log_tail = []
    if soak is None:
        return 2
    report = build_report(args, soak, info)
    report["node_exit_status"] = node.returncode if node is not None else None
    report["node_log_tail"] = node_log_tail
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(json.dumps({k: v for k, v in report["counts"].items() if k != "error_samples"}))
    for line in report["counts"]["error_samples"][:10]:
        print("  error:", line)
    print(format_summary(report["summary"]))
    print(f"wrote {out}")
    return 0 if report["summary"]["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

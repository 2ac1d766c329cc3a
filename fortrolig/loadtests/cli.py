"""`fortrolig-load`: drive synthetic participants against a Fortrolig node and report.

The controller (this process) validates the scenario, encodes (or reuses) the clip, creates the
rooms through the node's HTTP API, starts the worker processes, shows the live progress, and
writes the report. See docs/operations.md, "Load testing".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import native
from .clip import cached_clip
from .report import (
    EXIT_ERROR,
    EXIT_USAGE,
    build_report,
    parse_metrics,
    print_summary,
    render_html,
    server_delta,
    write_json,
)
from .scenario import KEYS, Scenario, ScenarioError, build, read_toml
from .worker import Assignment, WorkerPlan, worker_main

READY_TIMEOUT_S = 120.0
END_GRACE_S = 30.0  # after the scheduled end: participants leave, workers report
STOP_GRACE_S = 15.0

EPILOG = """\
exit status:
  0  the run completed and every threshold held
  1  the run could not be done (target unreachable, rooms refused, a worker crashed)
  2  bad flags or scenario (also: values beyond the hard caps)
  3  a threshold was broken (--max-loss, --max-join-p95, --max-freezes)
  4  more participants failed than --max-failed (default 0), or none received media

A participant's token comes from the node's HTTP API (rooms and single-use join tokens created
with a practitioner access token: --access-token, or minted from the node's --data-dir as
`fortrolig session create` does), or from --tokens-file.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fortrolig-load",
        description="Load-test a Fortrolig node's media path with cheap synthetic participants.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", type=Path, help="TOML scenario file (flags win over it)")
    s = p.add_argument_group("scenario")
    s.add_argument("--rooms", help="number of rooms (default 1)")
    s.add_argument("--participants-per-room", help="participants in each room (default 2)")
    s.add_argument("--ramp", dest="ramp_per_s", help="participants started per second (default 5)")
    s.add_argument("--duration", help="steady state after the last join, e.g. 30s (default 30s)")
    s.add_argument("--join-timeout", help="wait for the first remote frame (default 20s)")
    s.add_argument("--workers", help="worker processes (default: number of cores)")
    s.add_argument(
        "--decode-sample",
        action="store_const",
        const=True,
        help="decode one frame per remote track and check it against the clip (python engine)",
    )
    s.add_argument(
        "--engine",
        choices=("auto", "python", "native"),
        help="per-packet path of the participants: native (C; the default when built) or "
        "python (aiortc's packetizer and SRTP)",
    )
    m = p.add_argument_group("media profile")
    m.add_argument("--resolution", help="e.g. 640x360 (default)")
    m.add_argument("--fps", help="frame rate (default 30)")
    m.add_argument("--video-bitrate", help="e.g. 1M (default)")
    m.add_argument("--audio-bitrate", help="e.g. 48k (default)")
    m.add_argument("--seed", help="seed of the synthetic clip (default 7)")
    m.add_argument("--cache-dir", type=Path, help="clip cache (default ~/.cache/fortrolig-load)")
    t = p.add_argument_group("target")
    t.add_argument("--base-url", help="the node's URL (default http://127.0.0.1:8750)")
    t.add_argument("--ice-address", help="the only local ICE host address (default 127.0.0.1)")
    t.add_argument("--access-token", help="practitioner access token for the HTTP API")
    t.add_argument(
        "--metrics-token-file", help="the node's metrics.token_file (bearer secret of /metrics)"
    )
    t.add_argument("--data-dir", type=Path, help="mint the access token from this node data dir")
    t.add_argument(
        "--config", type=Path, help="node config (issuer, token lifetime) with --data-dir"
    )
    t.add_argument("--tokens-file", type=Path, help="JSON with pre-made rooms and join tokens")
    th = p.add_argument_group("thresholds")
    th.add_argument("--max-loss", help="e.g. 1%%: overall packet loss")
    th.add_argument("--max-join-p95", help="e.g. 1s: 95th percentile of join latency")
    th.add_argument("--max-freezes", help="total video freezes (gaps > 500 ms)")
    th.add_argument("--max-failed", help="participants allowed to fail (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("load-report"), help="report folder")
    o.add_argument("--no-progress", action="store_true", help="no live display")
    return p


FLAG_KEYS = {
    "rooms": ("scenario", "rooms"),
    "participants_per_room": ("scenario", "participants_per_room"),
    "ramp_per_s": ("scenario", "ramp_per_s"),
    "duration": ("scenario", "duration"),
    "join_timeout": ("scenario", "join_timeout"),
    "workers": ("scenario", "workers"),
    "decode_sample": ("scenario", "decode_sample"),
    "engine": ("scenario", "engine"),
    "resolution": ("media", "resolution"),
    "fps": ("media", "fps"),
    "video_bitrate": ("media", "video_bitrate"),
    "audio_bitrate": ("media", "audio_bitrate"),
    "seed": ("media", "seed"),
    "base_url": ("target", "base_url"),
    "metrics_token_file": ("target", "metrics_token_file"),
    "ice_address": ("target", "ice_address"),
    "max_loss": ("thresholds", "max_loss"),
    "max_join_p95": ("thresholds", "max_join_p95"),
    "max_freezes": ("thresholds", "max_freezes"),
    "max_failed": ("thresholds", "max_failed"),
}
assert set(FLAG_KEYS.values()) == set(KEYS), "every scenario key has a flag"


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    values = read_toml(args.scenario) if args.scenario is not None else {}
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            values[key] = value
    return build(values)


# -- tokens and rooms ----------------------------------------------------------------------


def mint_access_token(data_dir: Path, config_path: Path | None, min_ttl_s: float) -> str:
    """A practitioner access token signed with the node's key, as `fortrolig session create`."""
    from fortrolig.core.clock import SystemClock
    from fortrolig.core.config import load_config
    from fortrolig.core.errors import ConfigError
    from fortrolig.core.keys import load_or_create_signing_keys
    from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind

    keys = data_dir / "keys"
    if not keys.is_dir() or not any(keys.iterdir()):
        raise ScenarioError(f"--data-dir {data_dir} holds no signing keys (is it the node's?)")
    try:
        config = load_config(config_path, os.environ, {"server.data_dir": data_dir})
        signing_key, _ = load_or_create_signing_keys(data_dir)
    except ConfigError as exc:
        raise ScenarioError(f"--data-dir: {exc}") from None
    issuer = TokenIssuer(signing_key, config.auth.issuer, SystemClock())
    ttl = max(config.auth.access_token_ttl_s, int(min_ttl_s) + 60)
    return issuer.issue(TokenKind.ACCESS, "load-practitioner", Role.PRACTITIONER, ttl_s=ttl)


def read_tokens_file(path: Path, scenario: Scenario) -> list[tuple[str, list[str]]]:
    """``{"rooms": [{"room_id": ..., "tokens": [...]}, ...]}`` matching the scenario's sizes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rooms = [(str(r["room_id"]), [str(t) for t in r["tokens"]]) for r in data["rooms"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ScenarioError(f"--tokens-file {path}: {type(exc).__name__}: {exc}") from None
    if len(rooms) != scenario.rooms or any(
        len(tokens) != scenario.participants_per_room for _, tokens in rooms
    ):
        raise ScenarioError(
            f"--tokens-file {path} must hold {scenario.rooms} rooms of "
            f"{scenario.participants_per_room} tokens"
        )
    return rooms


class TargetError(RuntimeError):
    """The node could not be used (exit status 1)."""


def _metrics_headers(scenario: Scenario) -> dict[str, str]:
    """The bearer secret for /metrics when the node needs one (metrics.token_file)."""
    if not scenario.metrics_token_file:
        return {}
    try:
        secret = Path(scenario.metrics_token_file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise TargetError(f"cannot read the metrics token file: {exc.strerror}") from None
    return {"Authorization": f"Bearer {secret}"}


async def _scrape(http: aiohttp.ClientSession, scenario: Scenario) -> dict[str, float] | None:
    try:
        headers = _metrics_headers(scenario)
        async with http.get(f"{scenario.base_url}/metrics", headers=headers) as resp:
            if resp.status != 200:
                return None
            return parse_metrics(await resp.text())
    except (aiohttp.ClientError, TimeoutError):
        return None


async def prepare_rooms(
    scenario: Scenario, access_token: str
) -> tuple[list[str], dict[str, float] | None]:
    """Create the rooms; returns their ids and the server's /metrics before the run."""
    timeout = aiohttp.ClientTimeout(total=15)
    headers = {"Authorization": f"Bearer {access_token}"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        try:
            async with http.get(f"{scenario.base_url}/healthz") as resp:
                if resp.status != 200:
                    raise TargetError(f"{scenario.base_url}/healthz answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TargetError(f"cannot reach {scenario.base_url}: {exc}") from None
        before = await _scrape(http, scenario)
        rooms = []
        for _ in range(scenario.rooms):
            body = {"max_participants": scenario.participants_per_room}
            async with http.post(f"{scenario.base_url}/api/v1/rooms", json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 201:
                    raise TargetError(f"room refused: {resp.status} {data}")
                rooms.append(str(data["room_id"]))
        return rooms, before


async def finish_rooms(
    scenario: Scenario, access_token: str | None, rooms: list[str]
) -> dict[str, float] | None:
    """Scrape /metrics after the run, then end the rooms we created."""
    timeout = aiohttp.ClientTimeout(total=15)
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
        after = await _scrape(http, scenario)
        if access_token:
            for room in rooms:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.delete(f"{scenario.base_url}/api/v1/rooms/{room}"):
                        pass
        return after


async def scrape_only(scenario: Scenario) -> dict[str, float] | None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        return await _scrape(http, scenario)


# -- workers and progress ------------------------------------------------------------------


def plans(
    scenario: Scenario,
    rooms: list[tuple[str, list[str] | None]],
    access_token: str | None,
    clip_path: Path,
) -> list[WorkerPlan]:
    """Participant i joins room i // n at i / ramp seconds; workers take them round-robin."""
    per_worker: list[list[Assignment]] = [[] for _ in range(scenario.workers)]
    n = scenario.participants_per_room
    for i in range(scenario.participants):
        room_id, tokens = rooms[i // n]
        role = "practitioner" if i % n == 0 else "client"
        token = tokens[i % n] if tokens is not None else None
        per_worker[i % scenario.workers].append(
            Assignment(i, room_id, role, i / scenario.ramp_per_s, token)
        )
    return [
        WorkerPlan(
            worker=w,
            base_url=scenario.base_url,
            access_token=access_token,
            clip_path=str(clip_path),
            assignments=tuple(assignments),
            end_s=scenario.end_s,
            join_timeout_s=scenario.join_timeout_s,
            decode_sample=scenario.decode_sample,
            ice_address=scenario.ice_address,
            engine=scenario.engine,
        )
        for w, assignments in enumerate(per_worker)
    ]


@dataclass
class Progress:
    """The controller's view of the run, from the workers' progress messages."""

    total: int
    started: float = field(default_factory=time.monotonic)
    states: dict[int, dict[str, int]] = field(default_factory=dict)
    joined: dict[int, int] = field(default_factory=dict)
    errors: dict[int, dict[str, int]] = field(default_factory=dict)
    bins: dict[int, dict[int, list[tuple[int, int, int, float]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    last_t: dict[int, float] = field(default_factory=dict)
    history: list[tuple[float, int]] = field(default_factory=list)

    def update(self, worker: int, msg: dict[str, Any]) -> None:
        t = float(msg["t"])
        dt = t - self.last_t.get(worker, t - 1.0)
        self.last_t[worker] = t
        self.states[worker] = msg["states"]
        self.joined[worker] = msg["joined"]
        self.errors[worker] = msg["errors"]
        if t >= 0:
            self.bins[int(t)][worker].append(
                (msg["received"], msg["expected"], msg["bytes"], max(dt, 1e-3))
            )
        self.history.append((time.monotonic(), self.n_joined))

    def count(self, state: str) -> int:
        return sum(s.get(state, 0) for s in self.states.values())

    @property
    def n_joined(self) -> int:
        return sum(self.joined.values())

    @property
    def error_total(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for errs in self.errors.values():
            for k, v in errs.items():
                out[k] += v
        return dict(out)

    def join_rate(self, window: float = 5.0) -> float:
        now = time.monotonic()
        old = [(t, n) for t, n in self.history if t >= now - window]
        if len(old) < 2:
            return 0.0
        return (old[-1][1] - old[0][1]) / max(old[-1][0] - old[0][0], 1e-3)

    def series(self) -> list[dict[str, Any]]:
        out = []
        for second in sorted(self.bins):
            received = expected = 0
            bps = 0.0
            for entries in self.bins[second].values():
                r = sum(e[0] for e in entries)
                e = sum(e[1] for e in entries)
                b = sum(e[2] for e in entries)
                dt = sum(e[3] for e in entries)
                received += r
                expected += e
                bps += b * 8 / dt
            loss = max(0.0, 100.0 * (expected - received) / expected) if expected else 0.0
            out.append(
                {
                    "t": second,
                    "received": received,
                    "expected": expected,
                    "loss_pct": loss,
                    "mbps": bps / 1e6,
                }
            )
        return out

    def table(self, scenario: Scenario) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"fortrolig-load → {scenario.base_url}", show_header=False)
        table.add_column("k")
        table.add_column("v", justify="right")
        series = self.series()
        recent = series[-2] if len(series) >= 2 else None
        rows = [
            ("elapsed", f"{elapsed:.0f} s of ~{scenario.end_s:.0f} s"),
            ("joined", f"{self.n_joined} / {self.total}"),
            ("active (receiving media)", str(self.count("active"))),
            ("failed", str(self.count("failed"))),
            ("join rate", f"{self.join_rate():.1f} /s"),
            ("received", f"{recent['mbps']:.1f} Mbit/s" if recent else "–"),
            ("loss (last second)", f"{recent['loss_pct']:.2f} %" if recent else "–"),
            ("errors", ", ".join(f"{k}={v}" for k, v in self.error_total.items()) or "none"),
        ]
        for k, v in rows:
            table.add_row(k, v)
        return table

    def line(self) -> str:
        return (
            f"joined {self.n_joined}/{self.total} active {self.count('active')} "
            f"failed {self.count('failed')} join rate {self.join_rate():.1f}/s "
            f"errors {sum(self.error_total.values())}"
        )


@dataclass
class WorkerHandle:
    plan: WorkerPlan
    proc: BaseProcess
    conn: Connection
    ready: bool = False
    result: dict[str, Any] | None = None
    fatal: str | None = None


def _drain(h: WorkerHandle, progress: Progress) -> None:
    try:
        while h.conn.poll():
            kind, payload = h.conn.recv()
            if kind == "ready":
                h.ready = True
            elif kind == "progress":
                progress.update(h.plan.worker, payload)
            elif kind == "result":
                h.result = payload
            elif kind == "fatal":
                h.fatal = str(payload)
    except (EOFError, OSError):
        if h.result is None and h.fatal is None:
            h.fatal = f"worker {h.plan.worker} exited with status {h.proc.exitcode}"


def _done(h: WorkerHandle) -> bool:
    return h.result is not None or h.fatal is not None


def run_workers(
    scenario: Scenario, worker_plans: list[WorkerPlan], show: bool, err: Console
) -> tuple[list[WorkerHandle], Progress, float]:
    """Start the workers, run the scenario with a live display, collect their results."""
    ctx = multiprocessing.get_context("spawn")
    handles: list[WorkerHandle] = []
    progress = Progress(scenario.participants)
    for plan in worker_plans:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(plan, child), daemon=True)
        proc.start()
        child.close()
        handles.append(WorkerHandle(plan, proc, parent))
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(h.ready or _done(h) for h in handles):
            if time.monotonic() > deadline:
                raise TargetError("workers did not start in time")
            wait([h.conn for h in handles if not _done(h)], timeout=0.5)
            for h in handles:
                _drain(h, progress)
        fatal = [h.fatal for h in handles if h.fatal]
        if fatal:
            raise TargetError("; ".join(fatal))
        t0 = time.monotonic() + 0.3
        progress.started = t0
        for h in handles:
            h.conn.send(("start", t0))
        hard_deadline = t0 + scenario.end_s + scenario.join_timeout_s + END_GRACE_S
        _loop(handles, progress, scenario, show, err, hard_deadline)
        return handles, progress, t0
    finally:
        for h in handles:
            h.proc.join(timeout=5)
            if h.proc.is_alive():
                h.proc.terminate()  # only our own worker processes, by handle
                h.proc.join(timeout=5)
            h.conn.close()


def _loop(
    handles: list[WorkerHandle],
    progress: Progress,
    scenario: Scenario,
    show: bool,
    err: Console,
    hard_deadline: float,
) -> None:
    stopping = False
    last_line = 0.0
    live = Live(progress.table(scenario), console=err, refresh_per_second=2) if show else None
    with live if live is not None else contextlib.nullcontext():
        while not all(_done(h) for h in handles):
            try:
                wait([h.conn for h in handles if not _done(h)], timeout=0.5)
                for h in handles:
                    if not _done(h):
                        _drain(h, progress)
                if live is not None:
                    live.update(progress.table(scenario))
                elif time.monotonic() - last_line > 5:
                    last_line = time.monotonic()
                    err.print(progress.line(), highlight=False)
                if time.monotonic() > hard_deadline:
                    for h in handles:
                        if not _done(h):
                            h.fatal = f"worker {h.plan.worker} overran the hard time limit"
                    break
            except KeyboardInterrupt:
                if stopping:
                    raise
                stopping = True
                err.print("stopping: participants leave now (Ctrl-C again to abort)")
                for h in handles:
                    with contextlib.suppress(OSError):
                        h.conn.send(("stop", None))
                hard_deadline = min(hard_deadline, time.monotonic() + STOP_GRACE_S)


# -- main ----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fortrolig-load"


def resolve_engine(scenario: Scenario) -> Scenario:
    """``auto`` becomes native when the C extension is built (python with --decode-sample)."""
    if scenario.engine == "auto":
        use_python = scenario.decode_sample or not native.available()
        return replace(scenario, engine="python" if use_python else "native")
    if scenario.engine == "native" and not native.available():
        raise ScenarioError("engine native: the C extension was not built (make venv)")
    return scenario


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    scenario = resolve_engine(scenario_from_args(args))
    if args.tokens_file is None and args.access_token is None and args.data_dir is None:
        raise ScenarioError("give --access-token, --data-dir or --tokens-file")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    cache = args.cache_dir or default_cache_dir()
    t = time.monotonic()
    clip_path, clip, encoded = cached_clip(scenario.media, cache)
    err.print(
        f"clip {clip_path.name}: VP8 {clip.video_kbps:.0f} kbit/s, Opus {clip.audio_kbps:.0f} "
        f"kbit/s ({'encoded' if encoded else 'cached'}, {time.monotonic() - t:.1f} s)",
        highlight=False,
    )
    access = args.access_token
    rooms: list[tuple[str, list[str] | None]]
    created: list[str] = []
    if args.tokens_file is not None:
        rooms = [(r, tokens) for r, tokens in read_tokens_file(args.tokens_file, scenario)]
        before = asyncio.run(scrape_only(scenario))
    else:
        if access is None:
            access = mint_access_token(args.data_dir, args.config, scenario.ramp_s)
        created, before = asyncio.run(prepare_rooms(scenario, access))
        rooms = [(r, None) for r in created]
    cpu0 = _cpu_s()
    show = not args.no_progress and err.is_terminal
    handles, progress, t0 = run_workers(
        scenario, plans(scenario, rooms, access, clip_path), show, err
    )
    wall = time.monotonic() - t0
    after = asyncio.run(finish_rooms(scenario, access if created else None, created))
    participants = [p for h in handles if h.result for p in h.result["participants"]]
    participants.sort(key=lambda p: int(p["index"]))
    fatal = [h.fatal for h in handles if h.fatal]
    worker_cpu = sum(float(h.result["cpu_s"]) for h in handles if h.result)
    participant_s = sum(float(p["window_s"]) for p in participants)
    load = {
        "engine": scenario.engine,
        "workers": scenario.workers,
        "wall_s": wall,
        "worker_cpu_s": worker_cpu,
        "controller_cpu_s": _cpu_s() - cpu0,
        "participant_s": participant_s,
        # CPU seconds per second of a participant receiving media, in % of one core.
        "cpu_pct_per_participant": 100.0 * worker_cpu / participant_s if participant_s else None,
        "worker_failures": fatal,
        # the native engines' event-loop wake-ups, pacing ticks and sendmmsg calls, summed
        "native_engine": {
            k: sum(int(h.result.get("native_engine", {}).get(k, 0)) for h in handles if h.result)
            for k in ("wakeups", "ticks", "sendmmsg_calls")
        },
    }
    report = build_report(
        scenario,
        participants,
        progress.series(),
        progress.error_total,
        load,
        server_delta(before, after),
        started_at,
    )
    if fatal:
        report["exit_status"] = EXIT_ERROR
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(report, args.out / "report.json")
    (args.out / "report.html").write_text(render_html(report), encoding="utf-8")
    print_summary(report, out)
    for message in fatal:
        err.print(f"[red]worker failure[/]: {message}")
    out.print(f"report: {args.out / 'report.json'}, {args.out / 'report.html'}", highlight=False)
    return int(report["exit_status"])


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fortrolig-load` console script."""
    args = parser().parse_args(argv)
    out = Console()
    err = Console(stderr=True)
    try:
        return run(args, out, err)
    except ScenarioError as exc:
        print(f"fortrolig-load: scenario error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TargetError as exc:
        print(f"fortrolig-load: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

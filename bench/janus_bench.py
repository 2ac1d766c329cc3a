"""Janus VideoRoom and Fortrolig's SFU side by side, in one run, with the same clients.

    .venv/bin/python -m bench.janus_bench --out docs/bench-janus.json    (`make bench-janus`)
    .venv/bin/python -m bench.janus_bench --quick --out /tmp/janus.json  (smoke: K=1,2, 5 s)

Needs root and Debian's ``janus`` (1.1.2). Follows ../shared/research/janus-bench.md:

* Janus's ICE (libnice) does not complete on 127.0.0.x, so everything runs inside a network
  namespace this benchmark creates (``fbench-<pid>``): ``lo`` up and a veth pair with both ends
  inside it, 198.18.0.1/24 (servers) and 198.18.0.2/24 (clients), from 198.18.0.0/15 (reserved
  for benchmarks), and ``accept_local`` set in it (libnice sends through fb0 with
  IP_UNICAST_IF; those packets come back in on fb1 from a local address). The namespace has no
  other interface, so nothing can leave it. The outer
  process creates it, runs the measuring process in it (``ip netns exec``), and in every case
  stops what is left inside it by PID and deletes it; stale ``fbench-*`` namespaces of runs that
  are gone are removed at start.
* Janus is started with ``-C bench/janus/janus.jcfg -F bench/janus`` (VideoRoom plugin and HTTP
  transport on 198.18.0.1 only, no STUN, no nat_1_1, IPv6 off, ICE only on the veth, RTP ports
  40000-40199); "janus-el1" is the same with ``event_loops = 1`` (one loop thread for every
  handle: the like-for-like setting against one asyncio process). /etc/janus is not read.
* Fortrolig is bench.servers' in-process ``Sfu`` (what one media worker, i.e. one core, does),
  offering only 198.18.0.1 as ICE host address; clients offer only 198.18.0.2, ``iceServers=[]``.
* Per (server, K) a fresh server process pinned to core 1 and a fresh client process pinned to
  core 0: bench.clients' publisher (pre-encoded VP8 640x360@30 ~1 Mbit/s + Opus clip) and K
  subscribers that count packets without decoding; only the signalling differs (Janus: HTTP
  API, join as publisher → publish(offer) → answer; join as subscriber(feed) → offer →
  start(answer)). Server CPU = utime+stime of the server process over the window (Janus: read
  from /proc/PID/stat, all threads; cross-checked with the threads' schedstat).
* K = 1, 2, 4, 8, 16, ``--repeats`` times (default 3) in alternating server order; the median
  per (server, K) goes into the least-squares fit CPU % = intercept + slope·K. A 1:1
  consultation is two publishers each forwarded to one subscriber: 2 × CPU(K=1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .clients import ClientPlan, ClientSide, Snapshot, run_side
from .clip import Clip, encode_clip
from .common import (
    CLIENT_CORE,
    SERVER_CORE,
    exit_on_signal,
    ice_host_only,
    pin_process,
    wait_until,
)
from .servers import server_main
from .sfu_bench import _fmt, judge, linear_fit, machine, nominal_publish_rate
from .wire import Message

NS_PREFIX = "fbench-"
VETH = ("fb0", "fb1")  # names inside the namespace; bench/janus/janus.jcfg enforces fb0
SERVER_ADDR = "198.18.0.1"
CLIENT_ADDR = "198.18.0.2"
PREFIX_LEN = 24
JANUS_BIN = "/usr/bin/janus"
JANUS_DIR = Path(__file__).resolve().with_name("janus")
JANUS_URL = f"http://{SERVER_ADDR}:8088/janus"
JANUS_CONFIGS = {"janus": "janus.jcfg", "janus-el1": "janus-el1.jcfg"}
JANUS_ROOM = 1234
SERVERS = ("fortrolig", "fortrolig-inline", "janus", "janus-el1")
DEFAULT_KS = (1, 2, 4, 8, 16)
CLK_TCK = os.sysconf("SC_CLK_TCK")
JANUS_START_S = 15.0
LOG_TAIL = 1500


# -- the namespace (outer process) -------------------------------------------------------------


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def netns_pids(ns: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", ns, check=False).split()]


def stop_pids(pids: Sequence[int], grace_s: float = 5.0) -> None:
    """SIGTERM each PID, then SIGKILL those still alive after ``grace_s``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def delete_namespace(ns: str) -> None:
    """Stop every process still inside ``ns`` (by PID) and delete it."""
    deadline = time.monotonic() + 3.0  # a process that is ending by itself gets a moment
    while (pids := [p for p in netns_pids(ns) if p != os.getpid()]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pids:
        print(f"stopping {len(pids)} process(es) left in {ns}: {pids}", flush=True)
        stop_pids(pids)
    ip("netns", "del", ns, check=False)


def cleanup_stale_namespaces() -> None:
    """Delete ``fbench-*`` namespaces whose creating process is gone."""
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NS_PREFIX):
            continue
        owner = name[len(NS_PREFIX) :]
        if owner.isdigit() and _alive(int(owner)) and int(owner) != os.getpid():
            continue  # another benchmark run that is still going
        print(f"removing stale namespace {name}", flush=True)
        delete_namespace(name)


def create_namespace(ns: str) -> None:
    ip("netns", "add", ns)
    run = ("netns", "exec", ns, "ip")
    ip(*run, "link", "set", "lo", "up")
    ip(*run, "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
    ip(*run, "addr", "add", f"{SERVER_ADDR}/{PREFIX_LEN}", "dev", VETH[0])
    ip(*run, "addr", "add", f"{CLIENT_ADDR}/{PREFIX_LEN}", "dev", VETH[1])
    # libnice sets IP_UNICAST_IF on its sockets, so Janus's packets to 198.18.0.2 leave through
    # fb0 and arrive on fb1 with a source address that is local to the namespace: accept them
    # (this namespace's sysctl only; the host's stays as it is).
    sysctl = ["netns", "exec", ns, "sysctl", "-qw"]
    ip(*sysctl, *(f"net.ipv4.conf.{i}.accept_local=1" for i in ("all", *VETH)))
    ip(*run, "link", "set", VETH[0], "up")
    ip(*run, "link", "set", VETH[1], "up")


def outer_main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("bench.janus_bench needs root (it creates a network namespace)", file=sys.stderr)
        return 2
    if not os.access(JANUS_BIN, os.X_OK):
        print(f"{JANUS_BIN} is missing: apt-get install -y janus", file=sys.stderr)
        return 2
    cleanup_stale_namespaces()
    ns = f"{NS_PREFIX}{os.getpid()}"
    inner: subprocess.Popen[bytes] | None = None
    try:
        create_namespace(ns)
        print(f"namespace {ns}: {ip('netns', 'exec', ns, 'ip', '-br', 'addr').strip()}")
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.janus_bench"]
        inner = subprocess.Popen([*cmd, *argv, "--inner", ns])
        return inner.wait()
    finally:
        if inner is not None and inner.poll() is None:
            stop_pids([inner.pid], grace_s=20.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                inner.wait(timeout=5)
        delete_namespace(ns)
        left = [n for n in ip("netns", "list", check=False).split() if n == ns]
        print(f"namespace {ns} deleted" if not left else f"could not delete {ns}", flush=True)


# -- Janus's HTTP API (client process) ---------------------------------------------------------


class JanusApi:
    """One Janus session: attach VideoRoom handles, send messages, long-poll their events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession()
        self.session: int | None = None
        self._tx = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._poller: asyncio.Task[None] | None = None
        self.trickles: dict[int, list[Message]] = {}
        self.hangups: list[str] = []
        self.on_trickle: Any = None

    async def _post(self, path: str, body: Message) -> Message:
        async with self.http.post(self.url + path, json=body) as response:
            reply: Message = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus refused {body.get('janus')}: {reply.get('error')}")
        return reply

    async def create(self) -> None:
        reply = await self._post("", {"janus": "create", "transaction": self._next()})
        self.session = int(reply["data"]["id"])
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def attach(self) -> int:
        body = {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": self._next()}
        reply = await self._post(f"/{self.session}", body)
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: Message, jsep: Message | None = None, limit_s: float = 20.0
    ) -> Message:
        """Send a plugin request; returns its (synchronous or asynchronous) result event."""
        tx = self._next()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[tx] = future
        request: Message = {"janus": "message", "body": body, "transaction": tx}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.session}/{handle}", request)
            if reply.get("janus") != "ack":
                event = reply
            else:
                event = await asyncio.wait_for(future, limit_s)
        finally:
            self._waiting.pop(tx, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise RuntimeError(f"videoroom refused {body.get('request')}: {data['error']}")
        return event

    async def trickle_done(self, handle: int) -> None:
        body = {"janus": "trickle", "candidate": {"completed": True}, "transaction": self._next()}
        await self._post(f"/{self.session}/{handle}", body)

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.session}?maxev=10") as response:
                    events = await response.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                self._dispatch(event)

    def _dispatch(self, event: Message) -> None:
        kind = event.get("janus")
        future = self._waiting.get(str(event.get("transaction")))
        if kind == "event" and future is not None and not future.done():
            future.set_result(event)
        elif kind == "trickle" and self.on_trickle is not None:
            self.on_trickle(int(event.get("sender", 0)), event.get("candidate", {}))
        elif kind == "hangup":
            self.hangups.append(f"handle {event.get('sender')}: {event.get('reason')}")

    def _next(self) -> str:
        return f"t{next(self._tx)}"

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        if self.session is not None:
            with contextlib.suppress(Exception):
                body = {"janus": "destroy", "transaction": self._next()}
                await asyncio.wait_for(self._post(f"/{self.session}", body), 5.0)
        await self.http.close()


def janus_cpu(pid: int) -> Message:
    """The Janus process's CPU as bench.servers' "cpu" operation reports its own."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    sched_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                sched_ns += int(f.read().split()[0])
    return {
        "cpu_s": cpu_s,
        "sched_s": sched_ns / 1e9,
        "wall": time.perf_counter(),
        "counters": {},
        "failures": [],
    }


class JanusSide(ClientSide):
    """bench.clients' publisher and subscribers, signalled through Janus's VideoRoom."""

    def __init__(self, plan: ClientPlan, clip: Clip, conn: Connection, janus_pid: int) -> None:
        super().__init__(plan, clip, conn)
        self.janus_pid = janus_pid
        self.api = JanusApi(JANUS_URL)
        self.room = JANUS_ROOM  # bench.memory_janus puts each consultation in its own room
        self.handles: dict[int, str] = {}
        self.api.on_trickle = self._on_trickle

    def _on_trickle(self, handle: int, candidate: Message) -> None:
        pc = self.pcs.get(self.handles.get(handle, ""))
        if pc is None or candidate.get("completed") or "candidate" not in candidate:
            return
        ice = candidate_from_sdp(str(candidate["candidate"]).split(":", 1)[1])
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        self._spawn(pc.addIceCandidate(ice))

    async def setup_through_server(self) -> None:
        api = self.api
        await api.create()
        pub = self._new_publisher()
        handle = await api.attach()
        self.handles[handle] = "pub"
        joined = await api.message(
            handle, {"request": "join", "room": self.room, "ptype": "publisher", "display": "pub"}
        )
        feed = int(joined["plugindata"]["data"]["id"])
        await pub.setLocalDescription(await pub.createOffer())
        offer = {"type": "offer", "sdp": pub.localDescription.sdp}
        published = await api.message(handle, {"request": "publish"}, jsep=offer)
        await pub.setRemoteDescription(RTCSessionDescription(published["jsep"]["sdp"], "answer"))
        await api.trickle_done(handle)
        # The feed can be subscribed to once the publisher's PeerConnection is up.
        if not await wait_until(lambda: pub.connectionState == "connected", 20.0):
            raise RuntimeError(f"publisher did not connect to Janus: {pub.connectionState}")
        for i in range(self.plan.subscribers):
            pid = f"sub{i}"
            pc = self._new_pc()
            self.pcs[pid] = pc
            handle = await api.attach()
            self.handles[handle] = pid
            body = {
                "request": "join",
                "room": self.room,
                "ptype": "subscriber",
                "streams": [{"feed": feed}],
            }
            attached = await self._subscribe(handle, body)
            await pc.setRemoteDescription(RTCSessionDescription(attached["jsep"]["sdp"], "offer"))
            self._hook_receivers(pid, pc)
            await pc.setLocalDescription(await pc.createAnswer())
            answer = {"type": "answer", "sdp": pc.localDescription.sdp}
            await api.message(handle, {"request": "start"}, jsep=answer)
            await api.trickle_done(handle)

    async def _subscribe(self, handle: int, body: Message) -> Message:
        """Join as subscriber; retried while Janus does not list the feed yet."""
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return await self.api.message(handle, body)
            except RuntimeError as exc:
                if "No such feed" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _snapshot(self) -> Snapshot:
        snapshot = await super()._snapshot()
        snapshot.server = janus_cpu(self.janus_pid)
        snapshot.server["failures"] = list(self.api.hangups)
        return snapshot

    async def close(self) -> None:
        await super().close()
        await self.api.close()


# -- the client process ------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """What one client process is asked to do."""

    server: str  # "fortrolig", "janus", "janus-el1" or "direct"
    socket_path: str | None
    janus_pid: int | None
    clip_path: str
    subscribers: int
    warmup_s: float
    window_s: float


async def _client_run(point: Point, conn: Connection) -> dict[str, Any]:
    clip = Clip.load(point.clip_path)
    socket_path = point.socket_path if point.server.startswith("fortrolig") else None
    plan = ClientPlan(
        point.server, socket_path, point.clip_path, point.subscribers, point.warmup_s,
        point.window_s,
    )  # fmt: skip
    side: ClientSide
    if point.server.startswith("janus"):
        assert point.janus_pid is not None
        side = JanusSide(plan, clip, conn, point.janus_pid)
    else:
        side = ClientSide(plan, clip, conn)
    return await run_side(side, direct=point.server == "direct")


def client_main(point: Point, conn: Connection) -> None:
    """Process entry point: pin to the client core, offer only the client veth address."""
    pin_process(CLIENT_CORE)
    ice_host_only(CLIENT_ADDR)
    try:
        conn.send(("result", asyncio.run(_client_run(point, conn))))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc} (pid {os.getpid()})"))


# -- one point (measuring process, inside the namespace) ---------------------------------------


def start_janus(kind: str, log_path: str) -> subprocess.Popen[bytes]:
    config = JANUS_DIR / JANUS_CONFIGS[kind]
    cmd = [JANUS_BIN, "-C", str(config), "-F", str(JANUS_DIR), "-o"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CORE}),
        )
    deadline = time.monotonic() + JANUS_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"janus exited with {proc.returncode}: {_tail(log_path)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{JANUS_URL}/info", timeout=1) as response:
                if response.status == 200:
                    return proc
        time.sleep(0.1)
    stop_pids([proc.pid])
    raise RuntimeError(f"janus did not answer on {JANUS_URL}: {_tail(log_path)}")


def _tail(path: str) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return f.read()[-LOG_TAIL:]
    return ""


def run_point(
    server: str, subscribers: int, clip_path: str, warmup_s: float, window_s: float
) -> dict[str, Any]:
    """One (server, K) measurement in fresh processes, each stopped by its PID."""
    ctx = mp.get_context("spawn")
    started = time.monotonic()
    point: dict[str, Any] = {"server": server, "k": subscribers}
    with tempfile.TemporaryDirectory(prefix="janus-bench-") as tmp:
        socket_path = os.path.join(tmp, "control.sock")
        janus: subprocess.Popen[bytes] | None = None
        procs: list[Any] = []
        log_path = os.path.join(tmp, "janus.log")
        try:
            janus_pid = None
            if server.startswith("janus"):
                janus = start_janus(server, log_path)
                janus_pid = point["server_pid"] = janus.pid
            elif server.startswith("fortrolig"):
                ready_rx, ready_tx = ctx.Pipe(duplex=False)
                args = (server, socket_path, ready_tx, SERVER_ADDR)
                procs.append(ctx.Process(target=server_main, args=args, daemon=True))
                procs[-1].start()
                if not ready_rx.poll(60):
                    raise RuntimeError("server process did not start")
                point["server_pid"] = ready_rx.recv()[1]
            spec = Point(server, socket_path, janus_pid, clip_path, subscribers, warmup_s, window_s)
            result_rx, result_tx = ctx.Pipe(duplex=False)
            client = ctx.Process(target=client_main, args=(spec, result_tx), daemon=True)
            client.start()
            procs.insert(0, client)
            deadline = time.monotonic() + 90 + warmup_s + window_s
            outcome: tuple[str, Any] | None = None
            while outcome is None and time.monotonic() < deadline:
                if result_rx.poll(0.25):
                    kind, payload = result_rx.recv()
                    if kind != "measuring":
                        outcome = (kind, payload)
                elif not client.is_alive() and not result_rx.poll(0):
                    outcome = ("error", f"client exited with code {client.exitcode}")
            kind, payload = outcome or ("error", "timed out")
            if kind == "result" and isinstance(payload, dict):
                point.update(payload)
            else:
                point["error"] = str(payload)
                if janus is not None:
                    point["janus_log_tail"] = _tail(log_path)
        except Exception as exc:
            point["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            for proc in procs:
                proc.join(timeout=15)
                if proc.is_alive():
                    stop_pids([proc.pid])
                    proc.join(timeout=5)
            if janus is not None:
                stop_pids([janus.pid], grace_s=10.0)
                janus.wait(timeout=5)
    point["elapsed_s"] = time.monotonic() - started
    return point


def judge_point(point: dict[str, Any], nominal: float) -> None:
    """bench.sfu_bench's rules, plus: Janus too must forward K × what it receives."""
    judge(point, nominal)
    if point["server"].startswith("janus") and "error" not in point:
        expected = point["k"] * point["ingress_pkt_s"]
        point["expected_egress_pkt_s"] = expected
        if point["egress_pkt_s"] < 0.98 * expected:
            egress = point["egress_pkt_s"]
            point["flags"].append(f"egress {egress:.1f} pkt/s < 98% of {expected:.1f}")
            point["valid"] = False


# -- summary -----------------------------------------------------------------------------------

SUMMED = (
    "server_cpu_pct",
    "server_sched_pct",
    "us_per_egress_pkt",
    "egress_pkt_s",
    "loss_pct",
    "latency_ms_p50",
    "latency_ms_p99",
    "client_core_busy_pct",
    "client_cpu_pct",
)


def medians(points: Sequence[dict[str, Any]], servers: Sequence[str], ks: Sequence[int]) -> list:
    """Median of each figure over the valid repeats of every (server, K)."""
    rows = []
    for server in servers:
        for k in ks:
            group = [p for p in points if p["server"] == server and p["k"] == k]
            valid = [p for p in group if p.get("valid")]
            row: dict[str, Any] = {"server": server, "k": k, "runs": len(group)}
            row["valid_runs"] = len(valid)
            for key in SUMMED:
                values = [float(p[key]) for p in valid if p.get(key) is not None]
                row[key] = statistics.median(values) if values else None
            row["flags"] = sorted({f for p in group for f in p.get("flags", [])})
            rows.append(row)
    return rows


def summarize(rows: Sequence[dict[str, Any]], direct: dict[str, Any] | None) -> dict[str, Any]:
    floor = direct.get("latency_ms_p50") if direct and direct.get("valid") else None
    out: dict[str, Any] = {"latency_floor_ms_p50": floor}
    for server in {r["server"] for r in rows}:
        mine = [r for r in rows if r["server"] == server and r["server_cpu_pct"] is not None]
        fit = linear_fit(mine)
        k1 = next((r for r in mine if r["k"] == 1), None)
        one_to_one = 2 * k1["server_cpu_pct"] if k1 else None
        added = [
            r["latency_ms_p50"] - floor
            for r in mine
            if floor is not None and r["latency_ms_p50"] is not None
        ]
        losses = [r["loss_pct"] for r in mine if r["loss_pct"] is not None]
        out[server] = {
            "fit": fit,
            "consultation_pct_measured": one_to_one,
            "consultation_pct_fit": 2 * (fit["intercept_pct"] + fit["slope_pct_per_subscriber"])
            if fit
            else None,
            "added_latency_ms_p50_k1": added[0] if added else None,
            "max_loss_pct": max(losses) if losses else None,
        }
    return out


def table(rows: Sequence[dict[str, Any]], floor: float | None) -> str:
    lines = [
        "| server | K | valid runs | egress pkt/s | server CPU % of a core | µs per forwarded pkt "
        "| loss % | latency p50 / p99 ms | added p50 ms | client core % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        added = (
            r["latency_ms_p50"] - floor
            if floor is not None and r["latency_ms_p50"] is not None
            else None
        )
        client = max(r["client_core_busy_pct"] or 0.0, r["client_cpu_pct"] or 0.0)
        lines.append(
            f"| {r['server']} | {r['k']} | {r['valid_runs']}/{r['runs']} "
            f"| {_fmt(r['egress_pkt_s'])} | {_fmt(r['server_cpu_pct'], 2)} "
            f"| {_fmt(r['us_per_egress_pkt'], 0)} | {_fmt(r['loss_pct'], 2)} "
            f"| {_fmt(r['latency_ms_p50'], 2)} / {_fmt(r['latency_ms_p99'], 2)} "
            f"| {_fmt(added, 2)} | {client:.0f} |"
        )
    return "\n".join(lines)


def inner_main(args: argparse.Namespace) -> int:
    """The measuring process, inside the namespace."""
    ks = [int(k) for k in args.ks.split(",")] if args.ks else ([1, 2] if args.quick else DEFAULT_KS)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    window = args.window if args.window is not None else (5.0 if args.quick else 10.0)
    servers = [s for s in args.servers.split(",") if s]
    started = time.monotonic()
    info = machine()  # load average at the start, not the end
    with tempfile.TemporaryDirectory(prefix="janus-bench-clip-") as tmp:
        clip_path = os.path.join(tmp, "clip.bin")
        clip = encode_clip()
        clip.save(clip_path)
        nominal = nominal_publish_rate(clip)
        print(f"clip: {nominal:.1f} RTP pkt/s expected from the publisher", flush=True)
        points: list[dict[str, Any]] = []
        direct = None
        if not args.no_direct:
            direct = run_point("direct", 1, clip_path, args.warmup, window)
            judge_point(direct, nominal)
            _progress(direct)
        order = 0
        for repeat in range(repeats):
            for k in ks:
                ordered = servers[order % len(servers) :] + servers[: order % len(servers)]
                order += 1
                for server in ordered:
                    point = run_point(server, k, clip_path, args.warmup, window)
                    point["repeat"] = repeat
                    judge_point(point, nominal)
                    points.append(point)
                    _progress(point)
    rows = medians(points, servers, ks)
    summary = summarize(rows, direct)
    report = {
        "command": "python -m bench.janus_bench " + " ".join(args.original_argv),
        "machine": info,
        "janus": subprocess.run(
            [JANUS_BIN, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[:1],
        "network": {"namespace": args.inner, "server": SERVER_ADDR, "client": CLIENT_ADDR},
        "clip": {"video_kbps": clip.video_kbps, "audio_kbps": clip.audio_kbps},
        "nominal_publish_pkt_s": nominal,
        "settings": {"ks": ks, "repeats": repeats, "warmup_s": args.warmup, "window_s": window},
        "direct": direct,
        "points": points,
        "medians": rows,
        "summary": summary,
        "total_s": time.monotonic() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(rows, summary["latency_floor_ms_p50"]))
    print()
    for server in servers:
        s = summary.get(server, {})
        fit = s.get("fit")
        if fit is None:
            print(f"{server}: not enough valid points")
            continue
        print(
            f"{server}: CPU % = {fit['intercept_pct']:.2f} + "
            f"{fit['slope_pct_per_subscriber']:.3f}·K"
            f" (≈ {fit['us_per_extra_forwarded_pkt']:.0f} µs per extra forwarded packet); "
            f"1:1 consultation {_fmt(s['consultation_pct_measured'], 2)} % measured "
            f"(2 × K=1), {_fmt(s['consultation_pct_fit'], 2)} % from the fit"
        )
    print(f"\nwrote {out} in {report['total_s']:.0f} s")
    return 0


def _progress(p: dict[str, Any]) -> None:
    if "error" in p:
        print(f"{p['server']:>10} K={p['k']}: ERROR {p['error']}", flush=True)
        return
    print(
        f"{p['server']:>10} K={p['k']}: egress {p['egress_pkt_s']:.1f} pkt/s, server CPU "
        f"{_fmt(p.get('server_cpu_pct'), 2)} % (sched {_fmt(p.get('server_sched_pct'), 2)}), "
        f"{_fmt(p.get('us_per_egress_pkt'), 0)} µs/pkt, loss {_fmt(p.get('loss_pct'), 2)} %, "
        f"latency p50/p99 {_fmt(p['latency_ms_p50'], 2)}/{_fmt(p['latency_ms_p99'], 2)} ms, "
        f"client core {p['client_core_busy_pct']:.0f} %, srtp {p.get('srtp_profile')}"
        + ("" if p["valid"] else f"  [INVALID: {'; '.join(p['flags'])}]"),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default="docs/bench-janus.json", help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="K=1,2, 1 repeat, 5 s windows")
    parser.add_argument("--ks", default=None, help="comma-separated subscriber counts")
    parser.add_argument("--repeats", type=int, default=None, help="runs per (server, K)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=None, help="measured seconds")
    parser.add_argument("--servers", default=",".join(SERVERS), help=",".join(SERVERS))
    parser.add_argument("--no-direct", action="store_true", help="skip the latency floor")
    parser.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    if args.inner is None:
        return outer_main(argv)
    args.original_argv = [a for a in argv if a not in ("--inner", args.inner)]
    return inner_main(args)


if __name__ == "__main__":
    sys.exit(main())

"""A load worker process: runs its share of the synthetic participants on one asyncio loop.

Control channel (a ``multiprocessing`` pipe, pickled tuples):

* worker → controller: ``("ready", None)`` once the clip is loaded; ``("progress", dict)`` every
  second (counts, error codes, and the second's received/expected packets and bytes);
  ``("result", dict)`` at the end (one dict per participant and the worker's CPU time);
  ``("fatal", str)`` when the worker cannot run at all.
* controller → worker: ``("start", t0)`` (a ``time.monotonic()`` instant: CLOCK_MONOTONIC is
  the same in every process of the machine), ``("stop", None)`` to end early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import aioice.ice
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from fortrolig.media import aiortc_hooks as hooks

from . import native
from .clip import Clip, ReplayTrack
from .native import NativeEngine, NativeLoadParticipant
from .participant import Participant
from .probe import DecodeSample, RecvStats, ReferenceFrames, check_sample, hook_receiver

log = logging.getLogger(__name__)

RTT_EVERY_S = 5.0
LEAVE_GRACE_S = 2.0
# The native engine stops every sender at the scheduled end (all workers at the same monotonic
# instant) and waits this long before the counts are final: on loopback nothing is then in
# flight, so what the participants received is what the server forwarded.
QUIET_S = 0.4
ENGINES = ("python", "native")


def default_engine() -> str:
    """native when the C extension is built, else python."""
    return "native" if native.available() else "python"


@dataclass(frozen=True)
class Assignment:
    """One participant to run: which room, which role, when to start (seconds after t0)."""

    index: int
    room_id: str
    role: str
    start_s: float
    token: str | None = None  # pre-made join token (tokens file); else minted via the API


@dataclass(frozen=True)
class WorkerPlan:
    """Everything a worker needs (pickled into the process)."""

    worker: int
    base_url: str
    access_token: str | None
    clip_path: str
    assignments: tuple[Assignment, ...]
    end_s: float  # when every participant leaves (seconds after t0)
    join_timeout_s: float
    decode_sample: bool
    ice_address: str
    engine: str = "python"  # python | native (see native.py)


def restrict_ice(address: str) -> None:
    """Offer only ``address`` as ICE host candidate in this process."""
    v6 = ":" in address

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address] if (use_ipv6 if v6 else use_ipv4) else []

    aioice.ice.get_host_addresses = host_addresses


class LoadParticipant(Participant):
    """A participant that replays the clip and counts what it receives without decoding."""

    def __init__(
        self,
        ws_url: str,
        token: str,
        clip: Clip,
        name: str | None = None,
        reference: ReferenceFrames | None = None,
        decode_sample: bool = False,
    ) -> None:
        tracks: list[MediaStreamTrack] = [ReplayTrack("audio", clip), ReplayTrack("video", clip)]
        super().__init__(ws_url, token, name=name, tracks=tracks)
        self.stats: list[RecvStats] = []
        self.samples: list[DecodeSample] = []
        self.first_peer_at: float | None = None  # when a remote participant was first known
        self.errors: Counter[str] = Counter()
        self._decode_sample = decode_sample
        self._reference = reference

    def _prepare(self, pc: RTCPeerConnection) -> None:
        # The server's PLI/FIR make the replay jump to the clip's next keyframe, as an encoder
        # would answer them (otherwise a new subscriber waits up to a keyframe interval).
        for transceiver in pc.getTransceivers():
            track = transceiver.sender.track
            if isinstance(track, ReplayTrack):
                hooks.on_keyframe_request(transceiver.sender, track.request_keyframe)

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "joined" and msg["participants"] and self.first_peer_at is None:
            self.first_peer_at = time.monotonic()
        elif kind == "participant_joined" and self.first_peer_at is None:
            self.first_peer_at = time.monotonic()
        elif kind == "error":
            self.errors[str(msg.get("code"))] += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        receiver = next(
            (t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None
        )
        if receiver is None:
            return
        stats = RecvStats(track.kind, self._owner_of(track))
        self.stats.append(stats)
        sample = None
        if self._decode_sample:
            sample = DecodeSample(track.kind)
            self.samples.append(sample)
            reference = self._reference if track.kind == "video" else None
            self._consumers.append(
                asyncio.get_running_loop().create_task(check_sample(track, sample, reference))
            )
        hook_receiver(receiver, stats, sample)

    def first_video_at(self) -> float | None:
        times = [s.first_frame_at for s in self.stats if s.kind == "video" and s.first_frame_at]
        return min(times) if times else None

    def sent(self) -> dict[str, Any]:
        """aiortc's senders keep no counts the report uses: nothing to add."""
        return {}

    def close_window(self, end: float) -> None:
        """The measurement ends at ``end`` (monotonic): a stall still running is a freeze."""
        for s in self.stats:
            s.close_window(end)

    async def rtt_s(self) -> float | None:
        """The latest round-trip time aiortc's senders derived from the server's RTCP RR."""
        if self.pc is None:
            return None
        values = []
        for sender in self.pc.getSenders():
            report = await sender.getStats()
            for s in report.values():
                if getattr(s, "type", "") == "remote-inbound-rtp" and s.roundTripTime is not None:
                    values.append(float(s.roundTripTime))
        return max(values) if values else None


@dataclass
class Outcome:
    """One participant's run, as the worker reports it."""

    index: int
    room_id: str
    role: str
    worker: int
    status: str = "pending"  # pending, joining, joined, active, done, failed, skipped
    error: str | None = None
    participant_id: str | None = None
    node: str | None = None  # base URL of the node that served it (after any redirect)
    connect_at: float | None = None
    welcome_s: float | None = None
    joined_s: float | None = None
    join_latency_s: float | None = None
    rtt_samples: list[float] = field(default_factory=list)
    window_start: float | None = None
    window_end: float | None = None
    participant: LoadParticipant | NativeLoadParticipant | None = None

    def to_dict(self) -> dict[str, Any]:
        p = self.participant
        stats = p.stats if p is not None else []
        window = (
            (self.window_end - self.window_start)
            if self.window_start is not None and self.window_end is not None
            else 0.0
        )
        expected = sum(s.expected for s in stats)
        received = sum(s.received for s in stats)
        lost = sum(s.lost for s in stats)
        video = [s for s in stats if s.kind == "video"]
        return {
            "index": self.index,
            "room_id": self.room_id,
            "role": self.role,
            "worker": self.worker,
            "participant_id": self.participant_id,
            "node": self.node,
            "status": self.status,
            "error": self.error,
            "welcome_s": self.welcome_s,
            "joined_s": self.joined_s,
            "join_latency_s": self.join_latency_s,
            "window_s": window,
            "packets_received": received,
            "packets_expected": expected,
            "packets_lost": lost,
            "loss_pct": 100.0 * lost / expected if expected else None,
            "rtx_received": sum(s.recovered for s in stats),
            "bytes_received": sum(s.bytes for s in stats),
            "bitrate_kbps": (sum(s.bytes for s in stats) * 8 / window / 1000) if window else None,
            "video_frames": sum(s.frames for s in video),
            "audio_packets": sum(s.frames for s in stats if s.kind == "audio"),
            "jitter_ms": {
                kind: max((s.jitter_ms for s in stats if s.kind == kind), default=None)
                for kind in ("audio", "video")
            },
            "rtt_ms": (
                1000.0 * sum(self.rtt_samples) / len(self.rtt_samples) if self.rtt_samples else None
            ),
            "freezes": sum(s.freezes for s in video),
            "freeze_s": sum(s.freeze_s for s in video),
            "remote_tracks": len(stats),
            "errors": dict(p.errors) if p is not None else {},
            "decode_samples": [
                {"kind": s.kind, "ok": s.ok, "detail": s.detail, **s.meta}
                for s in (p.samples if p is not None else [])
            ],
            "engine": "native" if isinstance(p, NativeLoadParticipant) else "python",
            **(p.sent() if p is not None else {}),
        }


class Worker:
    """Runs the plan's participants and reports over the pipe."""

    def __init__(self, plan: WorkerPlan, conn: Connection) -> None:
        self.plan = plan
        self.conn = conn
        self.clip = Clip.load(plan.clip_path)
        self.reference = ReferenceFrames(self.clip) if plan.decode_sample else None
        self.outcomes = [Outcome(a.index, a.room_id, a.role, plan.worker) for a in plan.assignments]
        self.errors: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.t0 = 0.0
        self._http: aiohttp.ClientSession | None = None
        self._last = (0, 0, 0)
        self.native: NativeEngine | None = None
        self.engine_stats: dict[str, int] = {}

    @property
    def ws_url(self) -> str:
        base = self.plan.base_url
        return ("ws" + base.removeprefix("http")) + "/ws"

    async def run(self, t0: float) -> list[dict[str, Any]]:
        self.t0 = t0
        if self.plan.engine == "native":
            self.native = NativeEngine(self.clip)
            # every worker stops sending at the same monotonic instant (loop.time() is it)
            asyncio.get_running_loop().call_at(t0 + self.plan.end_s, self.native.pause)
        try:
            return await self._run_all()
        finally:
            if self.native is not None:
                e = self.native.engine
                self.engine_stats = {
                    "wakeups": e.wakeups,
                    "ticks": e.ticks,
                    "sendmmsg_calls": e.sendmmsg_calls,
                }
                self.native.close()

    async def _run_all(self) -> list[dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self._http = http
            tasks = [
                asyncio.create_task(self._participant(a, o))
                for a, o in zip(self.plan.assignments, self.outcomes, strict=True)
            ]
            reporter = asyncio.create_task(self._report())
            await asyncio.gather(*tasks, return_exceptions=True)
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        return [o.to_dict() for o in self.outcomes]

    async def _sleep_until(self, offset_s: float) -> bool:
        """Sleep until t0 + offset, or until stopped; True when it is time (not stopped)."""
        delay = self.t0 + offset_s - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        return not self.stop.is_set()

    async def _join_token(self, a: Assignment) -> str:
        if a.token is not None:
            return a.token
        assert self._http is not None
        url = f"{self.plan.base_url}/api/v1/rooms/{a.room_id}/tokens"
        headers = {"Authorization": f"Bearer {self.plan.access_token}"}
        body = {"role": a.role, "name": f"load-{a.index}"}
        async with self._http.post(url, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 201:
                code = (data or {}).get("error", {}).get("code", resp.status)
                raise _Failure(f"token_{code}")
            return str(data["token"])

    def _fail(self, o: Outcome, code: str) -> None:
        o.status = "failed"
        o.error = code
        self.errors[code] += 1

    async def _participant(self, a: Assignment, o: Outcome) -> None:
        if not await self._sleep_until(a.start_s):
            o.status = "skipped"
            return
        p: LoadParticipant | NativeLoadParticipant | None = None
        try:
            o.status = "joining"
            token = await self._join_token(a)
            p = self._new_participant(a, token)
            o.participant = p
            o.connect_at = start = time.monotonic()
            welcome = await p.connect()
            if welcome["type"] != "welcome":
                raise _Failure(str(welcome.get("code", welcome["type"])))
            o.participant_id = p.participant_id
            o.node = p.redirects[-1] if p.redirects else self.plan.base_url
            o.welcome_s = time.monotonic() - start
            joined = await p.join()
            if joined["type"] != "joined":
                raise _Failure(str(joined.get("code", joined["type"])))
            o.joined_s = time.monotonic() - start
            o.status = "joined"
            await p.publish(welcome)
            await self._await_media(p, o, start)
            o.status = "active"
            await self._hold(p, o)
            o.window_end = min(time.monotonic(), self.t0 + self.plan.end_s)
            p.close_window(o.window_end)
            o.status = "done"
        except _Failure as exc:
            self._fail(o, str(exc))
        except Exception as exc:
            log.debug("participant %s failed", a.index, exc_info=True)
            self._fail(o, type(exc).__name__)
        finally:
            if p is not None:
                if o.window_end is None:
                    o.window_end = time.monotonic()
                for code, n in p.errors.items():
                    self.errors[f"error:{code}"] += n
                await self._leave(p)

    def _new_participant(
        self, a: Assignment, token: str
    ) -> LoadParticipant | NativeLoadParticipant:
        if self.native is not None:
            return NativeLoadParticipant(self.ws_url, token, self.native, name=f"load-{a.index}")
        return LoadParticipant(
            self.ws_url,
            token,
            self.clip,
            name=f"load-{a.index}",
            reference=self.reference,
            decode_sample=self.plan.decode_sample,
        )

    async def _await_media(
        self, p: LoadParticipant | NativeLoadParticipant, o: Outcome, start: float
    ) -> None:
        """Wait for the first remote video frame; join latency counts from connect, or from
        when a remote participant appeared if that was later (the first one in a room waits)."""
        deadline: float | None = None
        while True:
            first = p.first_video_at()
            if first is not None:
                o.join_latency_s = first - max(start, p.first_peer_at or start)
                o.window_start = first
                return
            if p.close_code is not None:
                raise _Failure(f"closed_{p.close_code}")
            now = time.monotonic()
            if p.first_peer_at is not None and deadline is None:
                deadline = max(now, p.first_peer_at) + self.plan.join_timeout_s
            if deadline is not None and now > deadline:
                raise _Failure("no_media")
            if self.stop.is_set() or now > self.t0 + self.plan.end_s:
                raise _Failure("no_media" if p.first_peer_at else "no_peer")
            await asyncio.sleep(0.02)

    async def _hold(self, p: LoadParticipant | NativeLoadParticipant, o: Outcome) -> None:
        """Stay until the end; sample the RTT now and then; fail when the server drops us."""
        next_rtt = time.monotonic() + 1.0 + (o.index % 10) * RTT_EVERY_S / 10
        while time.monotonic() < self.t0 + self.plan.end_s and not self.stop.is_set():
            if p.close_code is not None:
                raise _Failure(f"closed_{p.close_code}")
            if time.monotonic() >= next_rtt:
                next_rtt += RTT_EVERY_S
                rtt = await p.rtt_s()
                if rtt is not None:
                    o.rtt_samples.append(rtt)
            # A native participant costs little but this loop: look less often (a dropped
            # connection is still seen within half a second).
            await asyncio.sleep(0.5 if self.native is not None else 0.1)
        rtt = await p.rtt_s()
        if rtt is not None:
            o.rtt_samples.append(rtt)
        if self.native is not None and not self.stop.is_set():
            await self._sleep_until(self.plan.end_s + QUIET_S)  # the engine paused at end_s

    async def _leave(self, p: LoadParticipant | NativeLoadParticipant) -> None:
        with contextlib.suppress(Exception):
            if p._ws is not None and not p._ws.closed:
                await p.send({"type": "leave"})
                await p.expect("bye", "closed", within=LEAVE_GRACE_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.close(), 5.0)

    def _totals(self) -> tuple[int, int, int]:
        received = expected = nbytes = 0
        for o in self.outcomes:
            if o.participant is not None:
                for s in o.participant.stats:
                    received += s.received
                    expected += s.expected
                    nbytes += s.bytes
        return received, expected, nbytes

    def progress(self) -> dict[str, Any]:
        states = Counter(o.status for o in self.outcomes)
        received, expected, nbytes = self._totals()
        r0, e0, b0 = self._last
        self._last = (received, expected, nbytes)
        return {
            "t": time.monotonic() - self.t0,
            "states": dict(states),
            "joined": sum(1 for o in self.outcomes if o.joined_s is not None),
            "errors": dict(self.errors),
            "received": received - r0,
            "expected": expected - e0,
            "bytes": nbytes - b0,
            "join_latencies": [
                o.join_latency_s for o in self.outcomes if o.join_latency_s is not None
            ],
        }

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.conn.send(("progress", self.progress()))
            while self.conn.poll():
                kind, _ = self.conn.recv()
                if kind == "stop":
                    self.stop.set()


class _Failure(Exception):
    """A participant failed with a stable code."""


async def _main(plan: WorkerPlan, conn: Connection) -> None:
    worker = Worker(plan, conn)
    if plan.decode_sample and worker.reference is not None:
        await asyncio.get_running_loop().run_in_executor(None, worker.reference.lumas)
    conn.send(("ready", None))
    kind, t0 = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    if kind != "start":
        return
    cpu0 = _cpu_s()
    results = await worker.run(float(t0))
    conn.send(("progress", worker.progress()))
    result = {"participants": results, "cpu_s": _cpu_s() - cpu0, "pid": os.getpid()}
    conn.send(("result", {**result, "native_engine": worker.engine_stats}))


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """Process entry point."""
    logging.basicConfig(level=logging.ERROR)
    restrict_ice(plan.ice_address)
    try:
        asyncio.run(_main(plan, conn))
    except Exception as exc:
        log.exception("load worker failed")
        with contextlib.suppress(Exception):
            conn.send(("fatal", f"worker {plan.worker}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()

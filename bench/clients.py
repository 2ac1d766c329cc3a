"""The client process: one publisher replaying the clip and K subscribers that never decode.

Everything runs on one asyncio loop pinned to the client core. Two hooks measure the path:

* the publisher's DTLS transport ``_send_rtp`` records, for every video packet with the marker
  bit (the last packet of a frame), the RTP timestamp and the time it was handed to the socket;
* each subscriber receiver's ``_handle_rtp_packet`` counts packets and frames (marker bit) and
  records the arrival time of every video marker packet, right after SRTP unprotect and parse,
  before aiortc's jitter buffer. The receiver then runs aiortc's own bookkeeping (receive
  statistics, NACK, REMB: subscribers give feedback like a browser would) but its jitter buffer
  is replaced by one that never completes a frame, so nothing is ever decoded.

Latency of a frame = its marker packet's arrival at a subscriber − the same frame's marker packet
leaving the publisher. The subscriber's RTP timestamps differ from the publisher's by a constant
per leg (both servers keep the timestamp spacing: Fortrolig shifts it, the relay's encoder reuses
the decoded frame's pts); the offset is found as the most common difference between a received
timestamp and the timestamps sent in the second before it (±2 ticks: the relay's pts round
trip rounds), which is unambiguous because the publisher's pts carry a seeded sub-millisecond
irregularity of up to 45 ticks (see ``bench.clip``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket, is_rtcp

from fortrolig.media.aiortc_hooks import selected_srtp_profile

from .clip import AUDIO_RATE, AUDIO_SAMPLES, FPS, Clip, ReplayTrack
from .common import (
    CLIENT_CORE,
    SERVER_CORE,
    CoreTicks,
    core_busy_pct,
    loopback_ice_only,
    pin_process,
    process_cpu_s,
    read_core_ticks,
    wait_until,
)
from .wire import Message, RpcClient

log = logging.getLogger(__name__)

TS_MASK = 0xFFFFFFFF
CONNECT_TIMEOUT_S = 20.0
FIRST_FRAME_TIMEOUT_S = 15.0
MATCH_WINDOW_S = 1.0
TS_SLACK = 2  # the relay's decode → encode round trip moves a timestamp by ±1 tick (rounding)
SENT_KEEP = 4000


@dataclass(frozen=True)
class ClientPlan:
    """What one client process does."""

    server: str  # "fortrolig", "relay" or "direct" (publisher → subscriber, no server)
    socket_path: str | None
    clip_path: str
    subscribers: int
    warmup_s: float
    window_s: float


@dataclass
class SendProbe:
    """The publisher's outgoing RTP."""

    video_ssrc: int = 0
    packets: int = 0
    sent: list[tuple[float, int]] = field(default_factory=list)  # (time, RTP ts) of markers


@dataclass
class RecvProbe:
    """One subscriber receiver's incoming RTP."""

    subscriber: str
    kind: str
    packets: int = 0
    frames: int = 0
    media_pt: int | None = None  # the first payload type seen (RTX never comes first)
    marks: list[tuple[int, float]] = field(default_factory=list)  # (RTP ts, time) of markers
    media_packets: int = 0  # packets of media_pt (for loss: RFC 3550 expected − received)
    first_seq: int | None = None
    highest_seq: int = 0  # extended (with wrap-around cycles)

    def note_seq(self, seq: int) -> None:
        """Count a media packet and track the extended highest sequence number."""
        self.media_packets += 1
        if self.first_seq is None:
            self.first_seq = self.highest_seq = seq
            return
        candidate = (self.highest_seq & ~0xFFFF) | seq
        if candidate < self.highest_seq - 0x8000:
            candidate += 0x10000
        elif candidate > self.highest_seq + 0x8000:
            candidate -= 0x10000
        self.highest_seq = max(self.highest_seq, candidate)

    def expected(self) -> int:
        return 0 if self.first_seq is None else self.highest_seq - self.first_seq + 1


class NullJitterBuffer:
    """Takes every packet and never completes a frame: the receiver's decoder stays idle."""

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        return False, None


@dataclass
class Snapshot:
    wall: float
    client_cpu_s: float
    cores: dict[int, CoreTicks]
    published: int
    received: list[tuple[int, int]]  # (packets, frames) per probe, in probe order
    server: Message | None


def frame_latencies(sent: list[tuple[float, int]], marks: list[tuple[int, float]]) -> list[float]:
    """Seconds from a frame's marker packet leaving the publisher to its arrival (see module)."""
    if not sent or not marks:
        return []
    times = [t for t, _ in sent]
    votes: Counter[int] = Counter()
    considered = marks[:300]
    for ts_received, t_received in considered:
        lo = bisect.bisect_left(times, t_received - MATCH_WINDOW_S)
        hi = bisect.bisect_right(times, t_received)
        for j in range(lo, hi):
            votes[(ts_received - sent[j][1]) & TS_MASK] += 1
    if not votes:
        return []

    def score(candidate: int) -> int:
        return sum(votes[(candidate + d) & TS_MASK] for d in range(-TS_SLACK, TS_SLACK + 1))

    offset = max((c for c, _ in votes.most_common(20)), key=score)
    if score(offset) < 0.5 * len(considered):
        return []  # no consistent offset: do not report a made-up latency
    sent_at = {ts: t for t, ts in sent}
    out = []
    for ts_received, t_received in marks:
        for d in range(-TS_SLACK, TS_SLACK + 1):
            t_sent = sent_at.get((ts_received - offset + d) & TS_MASK)
            if t_sent is not None:
                if t_received >= t_sent:
                    out.append(t_received - t_sent)
                break
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class ClientSide:
    """Publisher, subscribers and the measurement of one benchmark point."""

    def __init__(self, plan: ClientPlan, clip: Clip, conn: Connection) -> None:
        self.plan = plan
        self.clip = clip
        self.conn = conn
        self.recording = False
        self.send_probe = SendProbe()
        self.probes: list[RecvProbe] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.tracks: list[ReplayTrack] = []
        self.rpc: RpcClient | None = None
        self.failures: list[str] = []
        self._hooked: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- hooks ---------------------------------------------------------------------------

    def _hook_publisher(self, pc: RTCPeerConnection) -> None:
        probe = self.send_probe
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                probe.video_ssrc = transceiver.sender._ssrc
            dtls: RTCDtlsTransport = transceiver.sender.transport
            if id(dtls) in self._hooked:
                continue
            self._hooked.add(id(dtls))
            original = dtls._send_rtp

            async def send_rtp(data: bytes, original: Any = original) -> None:
                now = time.perf_counter()
                await original(data)
                if len(data) < 12 or is_rtcp(data):
                    return
                probe.packets += 1
                if data[1] & 0x80 and int.from_bytes(data[8:12], "big") == probe.video_ssrc:
                    probe.sent.append((now, int.from_bytes(data[4:8], "big")))
                    if len(probe.sent) > SENT_KEEP:
                        del probe.sent[: SENT_KEEP // 2]

            dtls._send_rtp = send_rtp  # type: ignore[method-assign]

    def _hook_receivers(self, subscriber: str, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) in self._hooked:
                continue
            self._hooked.add(id(receiver))
            probe = RecvProbe(subscriber, transceiver.kind)
            self.probes.append(probe)
            receiver._RTCRtpReceiver__jitter_buffer = NullJitterBuffer()  # type: ignore[attr-defined]
            original = receiver._handle_rtp_packet

            async def handle(
                packet: RtpPacket,
                arrival_time_ms: int,
                probe: RecvProbe = probe,
                original: Any = original,
            ) -> None:
                now = time.perf_counter()
                probe.packets += 1
                if probe.media_pt is None:
                    probe.media_pt = packet.payload_type
                if packet.payload_type == probe.media_pt:
                    probe.note_seq(packet.sequence_number)
                    if probe.kind == "audio":
                        probe.frames += 1
                    elif packet.marker:
                        probe.frames += 1
                        if self.recording:
                            probe.marks.append((packet.timestamp, now))
                await original(packet, arrival_time_ms)

            receiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    # -- setup ---------------------------------------------------------------------------

    @staticmethod
    def _new_pc() -> RTCPeerConnection:
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        return RTCPeerConnection(configuration=config)

    def _new_publisher(self) -> RTCPeerConnection:
        pc = self._new_pc()
        self.pcs["pub"] = pc
        for kind in ("audio", "video"):
            track = ReplayTrack(kind, self.clip)
            self.tracks.append(track)
            pc.addTransceiver(track, direction="sendonly")
        self._hook_publisher(pc)
        return pc

    def _on_event(self, message: Message) -> None:
        event = message.get("ev")
        if event == "offer":
            self._spawn(self._answer_offer(str(message["pid"]), str(message["sdp"])))
        elif event == "failed":
            self.failures.append(f"server: {message.get('pid')} {message.get('reason')}")

    async def _answer_offer(self, pid: str, sdp: str) -> None:
        pc = self.pcs[pid]
        # The server may offer before this client applied the answer to its own offer.
        if not await wait_until(lambda: pc.signalingState == "stable", 10.0):
            self.failures.append(f"{pid}: never stable for the server's offer")
            return
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        self._hook_receivers(pid, pc)
        await pc.setLocalDescription(await pc.createAnswer())
        assert self.rpc is not None
        await self.rpc.call("answer", pid=pid, sdp=pc.localDescription.sdp)

    def _spawn(self, coro: Any) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:
                self.failures.append(f"task: {type(exc).__name__}: {exc}")
                log.exception("client task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def setup_through_server(self) -> None:
        assert self.plan.socket_path is not None
        self.rpc = rpc = await RpcClient.connect(self.plan.socket_path, self._on_event)
        pub = self._new_publisher()
        await rpc.call("open_peer", pid="pub")
        await pub.setLocalDescription(await pub.createOffer())
        reply = await rpc.call("publish", pid="pub", sdp=pub.localDescription.sdp)
        await pub.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        for i in range(self.plan.subscribers):
            pid = f"sub{i}"
            pc = self._new_pc()
            self.pcs[pid] = pc
            # A subscriber publishes nothing: its one offer is receive-only audio + video.
            # (An offer with only a data channel loses a race in aiortc: see docs/performance.md.)
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
            await rpc.call("open_peer", pid=pid)
            await pc.setLocalDescription(await pc.createOffer())
            reply = await rpc.call("publish", pid=pid, sdp=pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def setup_direct(self) -> None:
        pub = self._new_publisher()
        sub = self._new_pc()
        self.pcs["sub0"] = sub
        await pub.setLocalDescription(await pub.createOffer())
        await sub.setRemoteDescription(RTCSessionDescription(pub.localDescription.sdp, "offer"))
        self._hook_receivers("sub0", sub)
        await sub.setLocalDescription(await sub.createAnswer())
        await pub.setRemoteDescription(RTCSessionDescription(sub.localDescription.sdp, "answer"))

    async def wait_flowing(self) -> None:
        pcs = list(self.pcs.values())
        if not await wait_until(
            lambda: all(pc.connectionState == "connected" for pc in pcs), CONNECT_TIMEOUT_S
        ):
            states = {k: pc.connectionState for k, pc in self.pcs.items()}
            raise RuntimeError(f"peers did not connect: {states}")
        subscribers = {p for p in self.pcs if p != "pub"}

        def all_see_video() -> bool:
            seeing = {p.subscriber for p in self.probes if p.kind == "video" and p.frames > 0}
            return seeing >= subscribers

        if not await wait_until(all_see_video, FIRST_FRAME_TIMEOUT_S, 0.05):
            server = await self.rpc.call("cpu") if self.rpc is not None else None
            seen = [(p.subscriber, p.kind, p.packets, p.frames) for p in self.probes]
            raise RuntimeError(
                f"not every subscriber received video: receivers {seen}, "
                f"published {self.send_probe.packets}, server {server}, {self.failures}"
            )

    # -- measurement ---------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        server = await self.rpc.call("cpu") if self.rpc is not None else None
        return Snapshot(
            wall=time.perf_counter(),
            client_cpu_s=process_cpu_s(),
            cores=read_core_ticks(),
            published=self.send_probe.packets,
            received=[(p.packets, p.frames) for p in self.probes],
            server=server,
        )

    async def measure(self) -> dict[str, Any]:
        await asyncio.sleep(self.plan.warmup_s)
        a = await self._snapshot()
        self.recording = True
        self.conn.send(("measuring", None))
        await asyncio.sleep(self.plan.window_s)
        self.recording = False
        b = await self._snapshot()
        return self._result(a, b)

    def _result(self, a: Snapshot, b: Snapshot) -> dict[str, Any]:
        window = b.wall - a.wall
        probes_then = len(a.received)
        # Per subscriber and kind (a subscriber may hold idle receivers, e.g. inactive m-lines).
        packets: Counter[tuple[str, str]] = Counter()
        frames: Counter[tuple[str, str]] = Counter()
        for i, probe in enumerate(self.probes):
            p0, f0 = a.received[i] if i < probes_then else (0, 0)
            p1, f1 = b.received[i]
            packets[(probe.subscriber, probe.kind)] += p1 - p0
            frames[(probe.subscriber, probe.kind)] += f1 - f0
        subscribers = sorted({p for p in self.pcs if p != "pub"})
        egress = sum(packets.values()) / window
        video_fps = [frames[(s, "video")] / window for s in subscribers]
        audio_pps = [frames[(s, "audio")] / window for s in subscribers]
        latencies: list[float] = []
        for probe in self.probes:
            if probe.kind == "video":
                latencies.extend(frame_latencies(self.send_probe.sent, probe.marks))
        result: dict[str, Any] = {
            "window_s": window,
            "ingress_pkt_s": (b.published - a.published) / window,
            "egress_pkt_s": egress,
            "video_fps_min": min(video_fps) if video_fps else 0.0,
            "audio_pps_min": min(audio_pps) if audio_pps else 0.0,
            "video_fps_expected": float(FPS),
            "audio_pps_expected": AUDIO_RATE / AUDIO_SAMPLES,
            "latency_ms_p50": _ms(percentile(latencies, 50)),
            "latency_ms_p99": _ms(percentile(latencies, 99)),
            "latency_samples": len(latencies),
            "loss_pct": self._loss_pct(),
            "client_cpu_pct": 100.0 * (b.client_cpu_s - a.client_cpu_s) / window,
            "client_core_busy_pct": core_busy_pct(a.cores, b.cores, CLIENT_CORE),
            "server_core_busy_pct": core_busy_pct(a.cores, b.cores, SERVER_CORE),
            "srtp_profile": self._srtp_profile(),
            "client_failures": list(self.failures),
        }
        if a.server is not None and b.server is not None:
            server_wall = float(b.server["wall"]) - float(a.server["wall"])
            server_cpu = float(b.server["cpu_s"]) - float(a.server["cpu_s"])
            c0: dict[str, int] = a.server["counters"]
            c1: dict[str, int] = b.server["counters"]
            result.update(
                server_cpu_pct=100.0 * server_cpu / server_wall,
                server_sched_pct=100.0
                * (float(b.server["sched_s"]) - float(a.server["sched_s"]))
                / server_wall,
                us_per_egress_pkt=1e6 * server_cpu / (egress * window) if egress else None,
                server_counters_delta={k: c1[k] - c0.get(k, 0) for k in c1},
                # per thread name (Fortrolig: "python" = event loop, "fortrolig-io" = I/O thread)
                server_threads_pct={
                    name: round(
                        100.0 * (t1 - a.server.get("threads", {}).get(name, 0.0)) / server_wall, 3
                    )
                    for name, t1 in b.server.get("threads", {}).items()
                },
                server_failures=b.server["failures"],
            )
        return result

    def _loss_pct(self) -> float | None:
        """Media packets lost on the way to the subscribers, since each leg's first packet."""
        expected = sum(p.expected() for p in self.probes)
        received = sum(p.media_packets for p in self.probes)
        return 100.0 * max(0, expected - received) / expected if expected else None

    def _srtp_profile(self) -> str | None:
        pc = self.pcs.get("sub0")
        if pc is None:
            return None
        transceivers = pc.getTransceivers()
        if not transceivers:
            return None
        return selected_srtp_profile(transceivers[0].receiver.transport)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for track in self.tracks:
            track.stop()
        for pc in self.pcs.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5.0)
        if self.rpc is not None:
            with contextlib.suppress(Exception):
                await self.rpc.call("shutdown", limit_s=10.0)
            await self.rpc.close()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


async def _run(plan: ClientPlan, conn: Connection) -> dict[str, Any]:
    clip = Clip.load(plan.clip_path)
    return await run_side(ClientSide(plan, clip, conn), direct=plan.server == "direct")


async def run_side(side: ClientSide, *, direct: bool) -> dict[str, Any]:
    """Connect (directly or through the server), wait for media, measure; always close."""
    started = time.perf_counter()
    try:
        if direct:
            await side.setup_direct()
        else:
            await side.setup_through_server()
        await side.wait_flowing()
        setup_s = time.perf_counter() - started
        result = await side.measure()
        result["setup_s"] = setup_s
        return result
    finally:
        await side.close()


def client_main(plan: ClientPlan, conn: Connection) -> None:
    """Process entry point: pin to the client core, run one point, send the result back."""
    pin_process(CLIENT_CORE)
    loopback_ice_only()
    logging.basicConfig(level=logging.WARNING)
    try:
        result = asyncio.run(_run(plan, conn))
        conn.send(("result", result))
    except Exception as exc:
        log.exception("client failed")
        conn.send(("error", f"{type(exc).__name__}: {exc} (pid {os.getpid()})"))

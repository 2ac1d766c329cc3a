"""RTP-level forwarding: one publisher track fanned out to subscriber legs, never decoded.

A :class:`PublishedTrack` receives a publisher's RTP right after SRTP unprotect, keeps receive
statistics, asks the publisher for lost packets (NACK) and keyframes (PLI, rate-limited), and
reports back (receiver reports, REMB = the minimum of its subscribers' estimates). Each
:class:`Leg` rewrites SSRC, sequence number, timestamp, payload type and header extensions for
one subscriber, keeps a packet cache to answer that subscriber's NACKs over RTX, holds video back
until a keyframe starts (so a new subscriber never decodes garbage) and sends its own sender
reports mapped from the publisher's (lip sync).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .aiortc_hooks import RawSender
from .counters import MediaCounters
from .nack import NackTracker
from .payload import keyframe_detector
from .rtpbytes import packet_seq, seq_newer, wrap_rtx_bytes

log = logging.getLogger(__name__)

CACHE_SIZE = 512  # packets per leg: ~1.5 s of 1 Mbit/s video, enough for NACK round trips
REMB_FRESH_S = 5.0  # a subscriber estimate older than this no longer caps the publisher
RTCP_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Codec:
    """A negotiated codec: the media payload type and, for video, its RTX payload type."""

    mime_type: str
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None


@dataclass
class SenderReport:
    """The publisher's latest SR: NTP/RTP pair and when it arrived (monotonic seconds)."""

    ntp: int
    rtp: int
    arrived: float


NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now(unix: float) -> int:
    """64-bit NTP timestamp of a Unix time (aiortc's clock goes through datetime objects: the
    profile showed ~4 % of the SFU's CPU there when called per packet)."""
    return int((unix + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def _ntp_add(ntp: int, seconds: float) -> int:
    return (ntp + int(seconds * (1 << 32))) & 0xFFFFFFFFFFFFFFFF


class PublishedTrack:
    """One incoming audio or video stream and the legs that forward it."""

    def __init__(
        self,
        *,
        owner_id: str,
        kind: str,
        codec: Codec,
        upstream: RawSender,
        rtcp_ssrc: Callable[[], int | None],
        counters: MediaCounters,
        min_bitrate: int,
        max_bitrate: int,
        keyframe_interval_s: float,
    ) -> None:
        self.owner_id = owner_id
        self.kind = kind
        self.codec = codec
        self.legs: list[Leg] = []
        self.media_ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.sender_report: SenderReport | None = None
        self._upstream = upstream
        self._rtcp_ssrc = rtcp_ssrc
        self._counters = counters
        self._min_bitrate = min_bitrate
        self._max_bitrate = max_bitrate
        self._keyframe_interval = keyframe_interval_s
        self._is_key = keyframe_detector(codec.mime_type)
        self._stats = StreamStatistics(codec.clock_rate)
        self._nack = NackTracker() if kind == "video" else None
        self._last_keyframe_request = -1e9
        self._lsr = 0
        self._lsr_time = 0.0
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self, media_ssrc: int | None, rtx_ssrc: int | None) -> None:
        """Called when aiortc starts the receiver: learn SSRCs and start the RTCP loop."""
        if media_ssrc:
            self.media_ssrc = media_ssrc
        self.rtx_ssrc = rtx_ssrc
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._rtcp_loop())

    # -- ingress -------------------------------------------------------------------------

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """aiortc's receive path hands every routed RTP packet of this stream here."""
        self.ingest(packet)

    def ingest(self, packet: RtpPacket) -> None:
        """Forward one packet now (also called synchronously from the fast ingress path)."""
        try:
            self._ingest(packet)
        except Exception:  # a bad packet must never kill aiortc's (or aioice's) receive loop
            self._counters.handler_errors += 1
            log.exception("dropping RTP packet after an error")

    def _ingest(self, packet: RtpPacket) -> None:
        codec = self.codec
        pt = packet.payload_type
        if pt == codec.rtx_payload_type and codec.rtx_payload_type is not None:
            if len(packet.payload) < 2 or self.media_ssrc is None:
                return  # padding-only bandwidth probe
            packet.sequence_number = (packet.payload[0] << 8) | packet.payload[1]
            packet.payload = packet.payload[2:]
            packet.payload_type = codec.payload_type
            packet.ssrc = self.media_ssrc
            self._counters.rtx_received += 1
        elif pt != codec.payload_type:
            self._counters.unknown_payload_type += 1
            return
        elif self.media_ssrc is None:
            self.media_ssrc = packet.ssrc
        elif packet.ssrc != self.media_ssrc:
            return
        self._counters.ingress_packets += 1
        self._stats.add(packet)
        if self._nack is not None:
            missing = self._nack.add(packet.sequence_number)
            if missing:
                self._send_nack(missing)
        keyframe = self._is_key(packet.payload) if self._is_key is not None else False
        if not self.legs:
            return
        in_seq = packet.sequence_number
        in_ts = packet.timestamp
        # One clock read per packet, not per leg (the profile showed aiortc's clock helpers at
        # ~5 % when recomputed for every subscriber).
        now = time.time()
        abs_send = (ntp_now(now) >> 14) & 0x00FFFFFF
        for leg in self.legs:
            leg.forward(packet, in_seq, in_ts, keyframe, now, abs_send)

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP from the publisher routed to this receiver (its sender reports)."""
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.media_ssrc:
            info = packet.sender_info
            self.sender_report = SenderReport(info.ntp_timestamp, info.rtp_timestamp, time.time())
            self._lsr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
            self._lsr_time = time.time()

    # -- feedback toward the publisher ---------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (PLI), at most once per keyframe interval."""
        now = time.monotonic()
        if self.kind != "video" or self.media_ssrc is None:
            return
        if now - self._last_keyframe_request < self._keyframe_interval:
            self._counters.pli_suppressed += 1
            return
        ssrc = self._rtcp_ssrc()
        if ssrc is None:
            return
        self._last_keyframe_request = now
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=self.media_ssrc)
        if self._upstream.send_rtcp(bytes(pli)):
            self._counters.pli_sent += 1

    def _send_nack(self, lost: list[int]) -> None:
        ssrc = self._rtcp_ssrc()
        if ssrc is None or self.media_ssrc is None:
            return
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=ssrc, media_ssrc=self.media_ssrc)
        nack.lost = sorted(lost)[:64]
        if self._upstream.send_rtcp(bytes(nack)):
            self._counters.nack_sent += 1

    def estimated_bitrate(self) -> int:
        """REMB for the publisher: the lowest fresh estimate of its subscribers, clamped."""
        now = time.monotonic()
        estimates = [
            leg.remb_bps for leg in self.legs if leg.remb_bps and now - leg.remb_at < REMB_FRESH_S
        ]
        value = min(estimates) if estimates else self._max_bitrate
        return max(self._min_bitrate, min(value, self._max_bitrate))

    def _report(self) -> bytes:
        ssrc = self._rtcp_ssrc()
        if ssrc is None or self.media_ssrc is None or self._stats.max_seq is None:
            return b""
        dlsr = 0
        if self._lsr:
            delay = time.time() - self._lsr_time
            if 0 < delay < 65536:
                dlsr = int(delay * 65536)
        info = RtcpReceiverInfo(
            ssrc=self.media_ssrc,
            fraction_lost=self._stats.fraction_lost,
            packets_lost=self._stats.packets_lost,
            highest_sequence=self._stats.max_seq + self._stats.cycles,
            jitter=self._stats.jitter,
            lsr=self._lsr,
            dlsr=dlsr,
        )
        out = bytes(RtcpRrPacket(ssrc=ssrc, reports=[info]))
        if self.kind == "video":
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=ssrc,
                media_ssrc=0,
                fci=pack_remb_fci(self.estimated_bitrate(), [self.media_ssrc]),
            )
            out += bytes(remb)
            self._counters.remb_sent += 1
        return out

    async def _rtcp_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(RTCP_INTERVAL_S * (0.5 + random.random()))
            try:
                report = self._report()
                if report and self._upstream.send_rtcp(report):
                    self._counters.rr_sent += 1
                if self._nack is not None:
                    again = self._nack.due()
                    if again:
                        self._send_nack(again)
            except Exception:
                self._counters.handler_errors += 1
                log.exception("publisher RTCP loop step failed")

    def close(self) -> None:
        """Stop feedback and detach every leg; idempotent."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for leg in list(self.legs):
            leg.close()
        self.legs.clear()


class Leg:
    """One published track forwarded to one subscriber's sender (an aiortc sender shell)."""

    def __init__(self, track: PublishedTrack, counters: MediaCounters) -> None:
        self.track = track
        self.remb_bps = 0
        self.remb_at = 0.0
        self.fraction_lost = 0
        self.jitter = 0
        self.rtt_s: float | None = None
        self.packets = 0
        self.octets = 0
        self.closed = False
        self._counters = counters
        self._out: RawSender | None = None
        self._ext: HeaderExtensionsMap | None = None
        self._mid: str | None = None
        self._cname = ""
        self._ssrc = 0
        self._rtx_ssrc = 0
        self._pt = 0
        self._rtx_pt: int | None = None
        self._rtx_seq = random.randint(0, 0x7FFF)
        self._seq_delta: int | None = None
        self._first_in = 0
        self._seq_start = random.randint(0, 0x7FFF)
        self._ts_delta = random.getrandbits(32)
        self._last_in_ts: int | None = None
        self._last_arrival = 0.0
        self._gated = track.kind == "video"
        self._cache: list[bytes | None] = [None] * CACHE_SIZE
        self._sr_sent_lsr = 0
        self._sr_sent_at = 0.0

    def attach(
        self,
        out: RawSender,
        *,
        ssrc: int,
        rtx_ssrc: int,
        payload_type: int,
        rtx_payload_type: int | None,
        extensions: HeaderExtensionsMap,
        mid: str | None,
        cname: str,
    ) -> None:
        """Bind to the negotiated subscriber sender; forwarding starts with the next packet."""
        self._out = out
        self._ssrc = ssrc
        self._rtx_ssrc = rtx_ssrc
        self._pt = payload_type
        self._rtx_pt = rtx_payload_type
        self._ext = extensions
        self._mid = mid
        self._cname = cname

    @property
    def forwarding(self) -> bool:
        """True once the keyframe gate has opened (video) or the first packet passed (audio)."""
        return self._seq_delta is not None

    def forward(
        self,
        packet: RtpPacket,
        in_seq: int,
        in_ts: int,
        keyframe: bool,
        now: float,
        abs_send_time: int,
    ) -> None:
        """Rewrite ``packet`` for this subscriber and send it. Mutates ``packet``.

        ``abs_send_time`` is the SFU's own send time: the subscriber's bandwidth estimator
        measures the SFU → subscriber path, not the publisher's.
        """
        out = self._out
        if out is None or self._ext is None or not out.connected:
            return
        if self._seq_delta is None:
            if self._gated and not keyframe:
                self._counters.gated_drops += 1
                self.track.request_keyframe()
                return
            self._seq_delta = (self._seq_start - in_seq) & 0xFFFF
            self._first_in = in_seq
        elif self.packets < 1024 and seq_newer(self._first_in, in_seq):
            return  # reordered from before the gate opened: the subscriber never saw its base
        seq = (in_seq + self._seq_delta) & 0xFFFF
        packet.ssrc = self._ssrc
        packet.sequence_number = seq
        packet.timestamp = (in_ts + self._ts_delta) & 0xFFFFFFFF
        packet.payload_type = self._pt
        packet.extensions.mid = self._mid
        packet.extensions.abs_send_time = abs_send_time
        data = packet.serialize(self._ext)
        self._cache[seq % CACHE_SIZE] = data
        sent = out.send_rtp(data)
        if sent:
            self.packets += 1
            self.octets += len(packet.payload)
            self._last_in_ts = in_ts
            self._last_arrival = now
            self._counters.forwarded_packets += 1
            self._counters.forwarded_bytes += sent

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP from the subscriber about this leg: reports, NACK, PLI/FIR, REMB."""
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self._on_report(report)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self._counters.nack_received += 1
            for seq in packet.lost[:64]:
                self._retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if packet.fmt == RTCP_PSFB_PLI:
                self._counters.pli_received += 1
            else:
                self._counters.fir_received += 1
            self.track.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bps = bitrate
                self.remb_at = time.monotonic()
                self._counters.remb_received += 1

    def _on_report(self, report: RtcpReceiverInfo) -> None:
        self.fraction_lost = report.fraction_lost
        self.jitter = report.jitter
        if report.lsr and report.lsr == self._sr_sent_lsr:
            rtt = time.time() - self._sr_sent_at - report.dlsr / 65536
            if 0 <= rtt < 60:
                self.rtt_s = rtt

    def _retransmit(self, seq: int) -> None:
        cached = self._cache[seq % CACHE_SIZE]
        out = self._out
        if cached is None or out is None or self._rtx_pt is None or packet_seq(cached) != seq:
            self._counters.nack_unanswered += 1
            return
        rtx = wrap_rtx_bytes(cached, self._rtx_pt, self._rtx_seq, self._rtx_ssrc)
        if rtx is None:
            return
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        if out.send_rtp(rtx):
            self._counters.retransmitted += 1

    def sender_report(self) -> bytes:
        """This leg's SR (+ SDES CNAME): the publisher's NTP/RTP mapping, shifted to our
        timestamps, so the subscriber can keep audio and video of a participant in sync."""
        if self._out is None or self._seq_delta is None or self._last_in_ts is None:
            return b""
        clock_rate = self.track.codec.clock_rate
        now = time.time()
        sr = self.track.sender_report
        if sr is not None:
            elapsed = now - sr.arrived
            ntp = _ntp_add(sr.ntp, elapsed)
            rtp = sr.rtp + int(elapsed * clock_rate)
        else:
            ntp = ntp_now(now)
            rtp = self._last_in_ts + int((now - self._last_arrival) * clock_rate)
        info = RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=(rtp + self._ts_delta) & 0xFFFFFFFF,
            packet_count=self.packets & 0xFFFFFFFF,
            octet_count=self.octets & 0xFFFFFFFF,
        )
        self._sr_sent_lsr = (ntp >> 16) & 0xFFFFFFFF
        self._sr_sent_at = now
        out = bytes(RtcpSrPacket(ssrc=self._ssrc, sender_info=info))
        if self._cname:
            chunk = RtcpSourceInfo(ssrc=self._ssrc, items=[(1, self._cname.encode())])
            out += bytes(RtcpSdesPacket(chunks=[chunk]))
        return out

    async def rtcp_loop(self) -> None:
        """Periodic sender reports for this leg (runs as the aiortc sender's RTCP task)."""
        while not self.closed:
            await asyncio.sleep(RTCP_INTERVAL_S * (0.5 + random.random()))
            report = self.sender_report()
            if report and self._out is not None and self._out.send_rtcp(report):
                self._counters.sr_sent += 1

    def close(self) -> None:
        """Stop forwarding; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._out = None
        if self in self.track.legs:
            self.track.legs.remove(self)

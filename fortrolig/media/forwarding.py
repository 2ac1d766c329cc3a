"""RTP-level forwarding: one publisher track fanned out to subscriber legs, never decoded.

The per-packet work is native (fortrolig/media/native/): a :class:`PublishedTrack`'s
``native`` track keeps receive statistics, finds missing packets and fans each packet out; a
:class:`Leg`'s ``native`` leg holds video back until a keyframe starts (so a new subscriber never
decodes garbage), rewrites SSRC, sequence number, timestamp, payload type and header extensions,
caches packets to answer NACKs over RTX, protects and sends. This module keeps what happens a few
times a second: asking the publisher for lost packets (NACK) and keyframes (PLI, rate-limited),
reporting back to it (receiver reports, REMB = the minimum of its subscribers' estimates), and
each leg's sender reports mapped from the publisher's (lip sync). Incoming RTCP (receiver
reports, NACK, PLI/FIR, REMB, the publisher's sender reports) is parsed natively too; a keyframe
request is the one piece of it that comes back to Python.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rtp import (
    RTCP_PSFB_APP,
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
)

from fortrolig.core.log_limit import RateLimitedLog

from . import _fastpath
from .aiortc_hooks import RawSender
from .counters import MediaCounters
from .subscriber import ClockMapping, MediaPacket, Subscriber

log = logging.getLogger(__name__)
# Peers control the packets these lines are about: at most a few per second.
limited_log = RateLimitedLog(log)

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


def keyframe_codec(mime_type: str) -> int:
    """Which keyframe test the native track applies to a codec (none for audio)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return _fastpath.KEYFRAME_VP8
    if mime == "video/h264":
        return _fastpath.KEYFRAME_H264
    return _fastpath.KEYFRAME_NONE


class PublishedTrack:
    """One incoming audio or video stream and the legs (and Python subscribers) it feeds.

    It is the :class:`~fortrolig.media.subscriber.TrackSource` a subscriber is given.
    """

    def __init__(
        self,
        *,
        owner_id: str,
        kind: str,
        codec: Codec,
        upstream: RawSender,
        name: str | None = None,
        rtcp_ssrc: Callable[[], int | None],
        counters: MediaCounters,
        min_bitrate: int,
        max_bitrate: int,
        keyframe_interval_s: float,
    ) -> None:
        self.owner_id = owner_id
        self.kind = kind
        self.name = name or kind  # "audio", "video" (the camera) or "screen"
        self._codec = codec
        self.legs: list[Leg] = []
        self._subscribers: list[Subscriber] = []
        self._upstream = upstream
        self._rtcp_ssrc = rtcp_ssrc
        self._counters = counters
        self._min_bitrate = min_bitrate
        self._max_bitrate = max_bitrate
        self._keyframe_interval = keyframe_interval_s
        self._last_keyframe_request = -1e9
        self._task: asyncio.Task[None] | None = None
        self._extensions = HeaderExtensionsMap()
        self.closed = False
        self.native = _fastpath.Track(
            counters.native,
            keyframe_codec=keyframe_codec(codec.mime_type),
            clock_rate=codec.clock_rate,
            payload_type=codec.payload_type,
            rtx_payload_type=_or_none(codec.rtx_payload_type),
            nack=kind == "video",
            on_keyframe=self.request_keyframe,
            on_missing=self._on_missing,
        )
        self._nack_retry: asyncio.TimerHandle | None = None

    @property
    def codec(self) -> Codec:
        return self._codec

    @codec.setter
    def codec(self, codec: Codec) -> None:
        """A renegotiation renumbered the payload types (same codec)."""
        self._codec = codec
        self.native.set_codec(codec.payload_type, _or_none(codec.rtx_payload_type))

    def expect_codec(self, codec: Codec) -> None:
        """An offer renumbering the payload types is out: accept its numbers too, since the
        publisher sends under them from the moment it applies its answer, before we read it."""
        if codec.mime_type.lower() == self._codec.mime_type.lower():
            self.native.expect_codec(codec.payload_type, _or_none(codec.rtx_payload_type))

    @property
    def track_id(self) -> str:
        """Unique within a room: ``<owner>-audio``, ``<owner>-video`` (camera) or
        ``<owner>-screen``."""
        return f"{self.owner_id}-{self.name}"

    @property
    def screen(self) -> bool:
        """A shared screen (the publish offer's second video), not a camera."""
        return self.name == "screen"

    @property
    def participant_id(self) -> str:
        return self.owner_id

    @property
    def mime_type(self) -> str:
        return self._codec.mime_type

    @property
    def clock_rate(self) -> int:
        return self._codec.clock_rate

    def clock_mapping(self) -> ClockMapping | None:
        """The publisher's latest sender report (the subscriber interface's view of it)."""
        native = self.native
        return ClockMapping(native.sr_ntp, native.sr_rtp) if native.has_sr else None

    # -- Python subscribers (media/subscriber.py) ------------------------------------------

    def add_subscriber(self, subscriber: Subscriber) -> None:
        """Deliver every packet to ``subscriber`` from the next one on."""
        if self.closed or subscriber in self._subscribers:
            return
        self._subscribers.append(subscriber)
        if self.native.tapped is None:
            self.native.set_tap(self._on_tap)

    def remove_subscriber(self, subscriber: Subscriber) -> None:
        """Stop delivering to ``subscriber``; the last one switches the native tap off."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
        if not self._subscribers and not self.closed:
            self.native.set_tap(None)

    def _on_tap(self, data: bytes) -> None:
        packet = MediaPacket.parse(data, time.monotonic())
        track_id = self.track_id
        for subscriber in tuple(self._subscribers):
            try:
                subscriber.rtp(track_id, packet)
            except Exception:  # one subscriber's bug must not stop the others (or the SFU)
                self._counters.handler_errors += 1
                limited_log.exception("subscriber failed on a packet of %s", track_id)

    @property
    def sender_report(self) -> SenderReport | None:
        """The publisher's latest SR (read by the native transport, or by aiortc's path)."""
        native = self.native
        if not native.has_sr:
            return None
        return SenderReport(native.sr_ntp, native.sr_rtp, native.sr_arrived)

    @property
    def media_ssrc(self) -> int | None:
        """The publisher's media SSRC once signalled or seen."""
        return self.native.media_ssrc or None

    def start(
        self, media_ssrc: int | None, extensions: HeaderExtensionsMap, audio_level_id: int
    ) -> None:
        """Called when aiortc starts the receiver: learn the SSRC, the publisher's extension
        ids, and start the RTCP loop."""
        self.native.set_options(media_ssrc=media_ssrc or 0, audio_level_id=audio_level_id)
        self._extensions = extensions
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._rtcp_loop())

    def add_leg(self, leg: Leg) -> None:
        """Forward to ``leg`` from the next packet on (the leg's gate decides when it opens)."""
        self.legs.append(leg)
        self.native.add_leg(leg.native)

    def remove_leg(self, leg: Leg) -> None:
        if leg in self.legs:
            self.legs.remove(leg)
        self.native.remove_leg(leg.native)

    # -- ingress -------------------------------------------------------------------------

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """aiortc's own receive path (only before the native transport takes the socket)."""
        try:
            self.native.ingest(packet.serialize(self._extensions))
        except Exception:  # a bad packet must never kill aiortc's receive loop
            self._counters.handler_errors += 1
            limited_log.exception("dropping RTP packet after an error")

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP from the publisher routed to this receiver (its sender reports)."""
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.media_ssrc:
            info = packet.sender_info
            self.native.set_sender_report(info.ntp_timestamp, info.rtp_timestamp, time.time())

    # -- feedback toward the publisher ---------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (PLI), at most once per keyframe interval."""
        now = time.monotonic()
        media_ssrc = self.media_ssrc
        if self.kind != "video" or media_ssrc is None or self.closed:
            return
        if now - self._last_keyframe_request < self._keyframe_interval:
            self._counters.pli_suppressed += 1
            return
        ssrc = self._rtcp_ssrc()
        if ssrc is None:
            return
        self._last_keyframe_request = now
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=ssrc, media_ssrc=media_ssrc)
        if self._upstream.send_rtcp(bytes(pli)):
            self._counters.pli_sent += 1

    def _on_missing(self, lost: list[int]) -> None:
        """A gap in the publisher's sequence numbers: ask for it now, and again if unanswered."""
        self._send_nack(lost)
        self._arm_nack_retry()

    def _arm_nack_retry(self) -> None:
        """Wake when an ask is due again (the native track times it by the publisher's
        measured answer time); nothing runs while nothing is missing."""
        if self.closed or self._nack_retry is not None:
            return
        wait = self.native.nack_wait()
        if wait is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # fed outside a loop (tests of the native track)
            return
        self._nack_retry = loop.call_later(wait, self._retry_nacks)

    def _retry_nacks(self) -> None:
        self._nack_retry = None
        if self.closed:
            return
        try:
            again = self.native.nack_due()
            if again:
                self._send_nack(again)
        except Exception:
            self._counters.handler_errors += 1
            limited_log.exception("NACK retry failed")
        self._arm_nack_retry()

    def _send_nack(self, lost: list[int]) -> None:
        ssrc = self._rtcp_ssrc()
        media_ssrc = self.media_ssrc
        if ssrc is None or media_ssrc is None:
            return
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=ssrc, media_ssrc=media_ssrc)
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
        media_ssrc = self.media_ssrc
        stats = self.native.report() if ssrc is not None and media_ssrc else None
        if ssrc is None or media_ssrc is None or stats is None:
            return b""
        fraction_lost, packets_lost, highest_sequence, jitter = stats
        lsr = dlsr = 0
        sr = self.sender_report
        if sr is not None:
            lsr = (sr.ntp >> 16) & 0xFFFFFFFF
            delay = time.time() - sr.arrived
            if 0 < delay < 65536:
                dlsr = int(delay * 65536)
        info = RtcpReceiverInfo(
            ssrc=media_ssrc,
            fraction_lost=fraction_lost,
            packets_lost=packets_lost,
            highest_sequence=highest_sequence,
            jitter=jitter,
            lsr=lsr,
            dlsr=dlsr,
        )
        out = bytes(RtcpRrPacket(ssrc=ssrc, reports=[info]))
        if self.kind == "video":
            remb = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=ssrc,
                media_ssrc=0,
                fci=pack_remb_fci(self.estimated_bitrate(), [media_ssrc]),
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
            except Exception:
                self._counters.handler_errors += 1
                limited_log.exception("publisher RTCP loop step failed")

    def close(self) -> None:
        """Stop feedback and detach every leg; idempotent."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._nack_retry is not None:
            self._nack_retry.cancel()
            self._nack_retry = None
        for leg in list(self.legs):
            leg.close()
        self.legs.clear()
        self.native.close()
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            try:
                subscriber.track_removed(self.track_id)
            except Exception:
                self._counters.handler_errors += 1
                log.exception("subscriber failed on the removal of %s", self.track_id)


def _or_none(payload_type: int | None) -> int:
    return -1 if payload_type is None else payload_type


class Leg:
    """One published track forwarded to one subscriber's sender (an aiortc sender shell)."""

    def __init__(self, track: PublishedTrack, counters: MediaCounters) -> None:
        self.track = track
        self.closed = False
        self._counters = counters
        self._out: RawSender | None = None
        self._transport: _fastpath.Transport | None = None
        self._ssrc = 0
        self._cname = ""
        # Random initial sequence number and timestamp offset per leg (RFC 3550 5.1).
        self.native = _fastpath.Leg(
            counters.native,
            gated=track.kind == "video",
            seq_start=random.randint(0, 0x7FFF),
            ts_delta=random.getrandbits(32),
            rtx_seq=random.randint(0, 0x7FFF),
        )

    def attach(
        self,
        out: RawSender,
        transport: _fastpath.Transport,
        *,
        ssrc: int,
        rtx_ssrc: int,
        payload_type: int,
        rtx_payload_type: int | None,
        extension_ids: dict[str, int],
        mid: str | None,
        cname: str,
    ) -> None:
        """Bind to the negotiated subscriber sender; forwarding starts with the next packet."""
        self._out = out
        self._transport = transport
        self._ssrc = ssrc
        self._cname = cname
        self.native.attach(
            transport,
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            payload_type=payload_type,
            rtx_payload_type=_or_none(rtx_payload_type),
            mid=(mid or "").encode(),
            mid_id=extension_ids.get("mid", 0) if mid else 0,
            abs_send_time_id=extension_ids.get("abs_send_time", 0),
            audio_level_id=extension_ids.get("audio_level", 0),
            on_keyframe=self.track.request_keyframe,
        )

    @property
    def forwarding(self) -> bool:
        """True once the keyframe gate has opened (video) or the first packet passed (audio)."""
        return self.native.forwarding

    @property
    def packets(self) -> int:
        return self.native.packets

    @property
    def octets(self) -> int:
        return self.native.octets

    @property
    def remb_bps(self) -> int:
        """The subscriber's latest REMB estimate for this leg (0: none yet)."""
        return self.native.remb_bps

    @property
    def remb_at(self) -> float:
        """``time.monotonic()`` of that estimate."""
        return self.native.remb_at

    @property
    def fraction_lost(self) -> int:
        return self.native.fraction_lost

    @property
    def jitter(self) -> int:
        return self.native.jitter

    @property
    def rtt_s(self) -> float | None:
        """Round trip to the subscriber from its receiver reports (None until measured)."""
        rtt = self.native.rtt
        return rtt if rtt >= 0 else None

    def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        """RTCP about this leg that reached aiortc's path (only before the native transport
        took the socket): handled by the same native code as everything after."""
        if self._transport is not None:
            self._transport.rtcp(bytes(packet))

    def sender_report(self) -> bytes:
        """This leg's SR (+ SDES CNAME): the publisher's NTP/RTP mapping, shifted to our
        timestamps, so the subscriber can keep audio and video of a participant in sync."""
        native = self.native
        if self._out is None or not native.forwarding or native.packets == 0:
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
            rtp = native.last_in_ts + int((now - native.last_arrival) * clock_rate)
        info = RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=(rtp + native.ts_delta) & 0xFFFFFFFF,
            packet_count=native.packets & 0xFFFFFFFF,
            octet_count=native.octets & 0xFFFFFFFF,
        )
        native.note_sr((ntp >> 16) & 0xFFFFFFFF, now)
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
        self.track.remove_leg(self)
        self.native.close()

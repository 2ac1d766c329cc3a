"""One participant's aiortc peer connection: its published tracks and its subscriber legs.

Negotiation: the participant makes exactly one offer, publishing its own audio and video
(sendonly). Every later change — a participant arriving or leaving — is a server offer adding
``sendonly`` transceivers (one per remote track) or making them ``inactive``; the participant
answers. Offers are serialized: a new one is made only when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.sdp import SessionDescription, candidate_from_sdp

from fortrolig.core.errors import BadRequest, Conflict
from fortrolig.core.log_limit import RateLimitedLog

from . import _fastpath
from . import aiortc_hooks as hooks
from .backend import PeerEvents
from .counters import MediaCounters
from .extmap import align_extmap_ids, extmap_ids
from .forwarding import Codec, Leg, PublishedTrack
from .settings import MediaSettings

log = logging.getLogger(__name__)
# Peers control the packets these lines are about: at most a few per second.
limited_log = RateLimitedLog(log)

# One audio, one camera video, optionally a second video (the screen share, sending only while
# shared: no renegotiation) and one (ignored) data channel.
MAX_PUBLISH_MLINES = 4
CONNECT_TIMEOUT_S = 30.0
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_SENDING = ("sendonly", "sendrecv")
_KINDS = ("audio", "video", "application")


@dataclass
class Slot:
    """A sendonly transceiver carrying one remote participant's track to this peer."""

    transceiver: RTCRtpTransceiver
    leg: Leg
    publisher_id: str


def parse_sdp(sdp: str, kind: str) -> SessionDescription:
    """Parse and sanity-check an SDP before aiortc applies it (it must not half-apply junk)."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
        raise BadRequest(f"malformed {kind} SDP: {type(exc).__name__}", code="bad_sdp") from exc
    if not desc.media:
        raise BadRequest(f"{kind} SDP has no media section", code="bad_sdp")
    for m in desc.media:
        if m.dtls is None or not m.dtls.fingerprints or m.ice is None or not m.ice.usernameFragment:
            raise BadRequest(
                f"{kind} SDP lacks DTLS fingerprint or ICE credentials", code="bad_sdp"
            )
    # Every section needs its own mid (BUNDLE and the SFU's routing go by it); aiortc accepts
    # a repeated one and then fails deep inside createAnswer/setLocalDescription.
    mids = [m.rtp.muxId for m in desc.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise BadRequest(f"{kind} SDP media sections need distinct mids", code="bad_sdp")
    # aiortc skips a section of another kind (but not the BUNDLE group naming it), and reads a
    # missing direction as None: both fail later, deep inside aiortc.
    for m in desc.media:
        if m.kind not in _KINDS:
            raise BadRequest(f"{kind} SDP has a media section of an unknown kind", code="bad_sdp")
        if m.kind != "application" and m.direction not in _DIRECTIONS:
            raise BadRequest(f"{kind} SDP media section without a direction", code="bad_sdp")
    # A BUNDLE group naming a mid no section has leaves aiortc's transceivers without a
    # transport (the group's first mid names the transport all of them share).
    for group in desc.group:
        if group.semantic == "BUNDLE" and not {str(i) for i in group.items} <= set(mids):
            raise BadRequest(f"{kind} SDP bundles a mid it does not have", code="bad_sdp")
    return desc


def _negotiated_codec(transceiver: RTCRtpTransceiver) -> Codec | None:
    codecs: list[RTCRtpCodecParameters] = hooks.negotiated_codecs(transceiver)
    main = next((c for c in codecs if not c.mimeType.lower().endswith("/rtx")), None)
    if main is None:
        return None
    rtx = next(
        (
            c.payloadType
            for c in codecs
            if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == main.payloadType
        ),
        None,
    )
    return Codec(main.mimeType, main.clockRate, int(main.payloadType or 0), rtx)


def _native_track_of(receiver: object) -> _fastpath.Track | None:
    """The native track fed by a receiver of ours (None: not a forwarding receiver)."""
    track = hooks.receiver_tag(receiver)
    return track.native if isinstance(track, PublishedTrack) else None


class Peer:
    """The SFU side of one participant."""

    def __init__(
        self,
        participant_id: str,
        settings: MediaSettings,
        counters: MediaCounters,
        events: PeerEvents,
        pump: _fastpath.Pump | None = None,
    ) -> None:
        self.participant_id = participant_id
        self._pump = pump
        self.published: list[PublishedTrack] = []
        self.slots: list[Slot] = []
        self.closed = False
        self._settings = settings
        self._counters = counters
        self._events = events
        self._has_published = False
        self._awaiting_answer = False
        self._needs_offer = False
        self._extmap_ids: dict[str, int] = {}  # header extension ids of the publish offer
        self._published_by_mid: dict[str, PublishedTrack] = {}
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Legs whose sender started before this peer's native transport existed.
        self._unattached: list[tuple[RTCRtpTransceiver, Leg, RTCRtpSendParameters]] = []
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in settings.ice_servers
        ]
        # iceServers is always explicit: aiortc adds Google's public STUN server otherwise.
        config = RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(configuration=config)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def has_published(self) -> bool:
        return self._has_published

    def srtp_profile(self) -> str | None:
        """The negotiated SRTP profile of the bundled transport, once connected."""
        for dtls in hooks.dtls_transports(self.pc):
            profile = hooks.selected_srtp_profile(dtls)
            if profile:
                return profile
        return None

    # -- negotiation ---------------------------------------------------------------------

    async def publish(self, offer_sdp: str) -> str:
        """Apply the participant's one publishing offer; returns the SFU's answer."""
        self._check_open()
        if self._has_published:
            raise Conflict("this participant already published", code="already_published")
        desc = parse_sdp(offer_sdp, "offer")
        self._extmap_ids = extmap_ids(offer_sdp)
        kinds = [m.kind for m in desc.media]
        too_many = kinds.count("video") > 2 or kinds.count("audio") > 1
        if len(desc.media) > MAX_PUBLISH_MLINES or too_many:
            raise BadRequest(
                "publish at most one audio track, a camera and a screen", code="bad_sdp"
            )
        async with self._lock:
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except Exception as exc:
                raise BadRequest(f"offer refused: {exc}", code="bad_sdp") from exc
            try:
                hooks.enforce_aes256_srtp(self.pc)
                sending = {m.rtp.muxId for m in desc.media if m.direction in _SENDING}
                # In m-line order: the first video is the camera, a second one the screen.
                videos = [m.rtp.muxId for m in desc.media if m.kind == "video"]
                for t in self.pc.getTransceivers():
                    if t.kind in ("audio", "video") and t.mid in sending:
                        screen = len(videos) == 2 and t.mid == videos[1]
                        self._add_published(t, "screen" if screen else t.kind)
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            except Exception as exc:
                # aiortc accepted the offer, then could not answer it (fuzzing found several
                # such offers): the participant's fault, and nothing of it stays published.
                self._unpublish()
                raise BadRequest(f"offer refused: {exc!r}", code="bad_sdp") from exc
            hooks.enforce_aes256_srtp(self.pc)
            # Gathered now: sort what reaches these sockets before aioice and aiortc read it.
            hooks.guard_ice_sockets(self.pc, self._counters.count_drop)
            self._has_published = True
        self._spawn(self._watch_connect())
        return str(self.pc.localDescription.sdp)

    def _unpublish(self) -> None:
        for track in self.published:
            track.close()
        self.published.clear()
        self._published_by_mid.clear()

    async def answer(self, answer_sdp: str) -> None:
        """Apply the participant's answer to the SFU's last offer."""
        self._check_open()
        if not self._awaiting_answer:
            raise Conflict("no offer is waiting for an answer", code="no_pending_offer")
        parse_sdp(answer_sdp, "answer")
        async with self._lock:
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
            except Exception as exc:
                raise BadRequest(f"answer refused: {exc}", code="bad_sdp") from exc
            self._awaiting_answer = False
            self._refresh_published_codecs()
        self._kick()

    async def add_candidate(self, candidate: str, sdp_mid: str | None, index: int | None) -> None:
        """A trickled remote ICE candidate ("" = end of candidates, ignored)."""
        self._check_open()
        text = candidate.removeprefix("candidate:")
        if not text:
            return
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:
            raise BadRequest("malformed ICE candidate", code="bad_candidate") from exc
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = index
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    def subscribe(self, track: PublishedTrack) -> None:
        """Add a sendonly transceiver forwarding ``track`` to this participant."""
        self._check_open()
        prefs = [
            c
            for c in RTCRtpSender.getCapabilities(track.kind).codecs
            if c.mimeType.lower() in (track.codec.mime_type.lower(), f"{track.kind}/rtx")
        ]
        transceiver = self.pc.addTransceiver(track.kind, direction="sendonly")
        transceiver.setCodecPreferences(prefs)
        leg = Leg(track, self._counters)
        # The browser groups by stream id: the participant's camera and microphone in one
        # stream named by its id, a screen in a stream of its own ("<id>-screen").
        stream_id = track.track_id if track.screen else track.owner_id
        hooks.set_sender_msid(transceiver.sender, stream_id, track.track_id)
        hooks.hook_sender(
            transceiver.sender,
            on_rtcp=self._leg_rtcp(leg),
            on_started=lambda params: self._attach_leg(transceiver, leg, params),
            rtcp_loop=leg.rtcp_loop,
        )
        track.add_leg(leg)
        self.slots.append(Slot(transceiver, leg, track.owner_id))
        self._needs_offer = True
        self._kick()

    def unsubscribe(self, publisher_id: str) -> None:
        """Stop forwarding a departed participant's tracks and tell the browser (inactive)."""
        if self.closed:
            return
        gone = [s for s in self.slots if s.publisher_id == publisher_id]
        for slot in gone:
            slot.leg.close()
            slot.transceiver.direction = "inactive"
            # A participant who resumes keeps its id, and so its msid: the dead m-line must not
            # carry it too (browsers refuse an SDP with duplicate a=msid lines).
            sender = slot.transceiver.sender
            ssrc, _ = hooks.sender_ssrcs(sender)
            hooks.set_sender_msid(sender, "-", f"gone-{slot.transceiver.mid}-{ssrc}")
            self.slots.remove(slot)
        if gone:
            self._needs_offer = True
            self._kick()

    def _expect_offered_codecs(self) -> None:
        # The browser switches to the offer's payload types when it applies its answer; the
        # native track accepts both mappings (by SSRC) until the answer is read.
        for t in self.pc.getTransceivers():
            track = self._published_by_mid.get(t.mid) if t.mid is not None else None
            codec = _negotiated_codec(t) if track is not None else None
            if track is not None and codec is not None:
                track.expect_codec(codec)

    def _refresh_published_codecs(self) -> None:
        # aiortc's createOffer renumbers every transceiver's payload types with its defaults; a
        # browser follows the renumbering in its answer and sends the published media under the
        # new payload types from then on (Chromium: VP8 96 -> 97, so 97 is no longer RTX).
        for t in self.pc.getTransceivers():
            track = self._published_by_mid.get(t.mid) if t.mid is not None else None
            codec = _negotiated_codec(t) if track is not None else None
            if track is not None and codec is not None:
                if codec.mime_type.lower() == track.codec.mime_type.lower():
                    track.codec = codec
                    codecs = hooks.negotiated_codecs(t)
                    pts = [int(c.payloadType) for c in codecs if c.payloadType is not None]
                    hooks.set_receiver_payload_types(t.receiver, pts)

    def _add_published(self, transceiver: RTCRtpTransceiver, name: str) -> None:
        """``name``: the track's part of its id, ``audio``, ``video`` (camera) or ``screen``."""
        codec = _negotiated_codec(transceiver)
        if codec is None:
            return
        receiver = transceiver.receiver
        track = PublishedTrack(
            owner_id=self.participant_id,
            kind=transceiver.kind,
            name=name,
            codec=codec,
            upstream=hooks.RawSender(receiver.transport),
            rtcp_ssrc=lambda: hooks.receiver_rtcp_ssrc(receiver),
            counters=self._counters,
            min_bitrate=self._settings.min_bitrate_bps,
            max_bitrate=self._settings.max_bitrate_bps,
            keyframe_interval_s=self._settings.keyframe_min_interval_ms / 1000,
        )
        if transceiver.mid is not None:
            self._published_by_mid[transceiver.mid] = track

        def started(params: object) -> None:
            encodings = getattr(params, "encodings", [])
            ssrc = encodings[0].ssrc if encodings else None
            extensions = hooks.receive_extensions(receiver.transport)
            track.start(ssrc, extensions, hooks.extension_ids(extensions)["audio_level"])

        hooks.hook_receiver(receiver, track.on_rtp, track.on_rtcp, started)
        hooks.tag_receiver(receiver, track)
        self.published.append(track)

    def _attach_leg(
        self, transceiver: RTCRtpTransceiver, leg: Leg, params: RTCRtpSendParameters
    ) -> None:
        codec = params.codecs[0]
        rtx = next(
            (
                c.payloadType
                for c in params.codecs
                if c.mimeType.lower().endswith("/rtx")
                and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        if codec.mimeType.lower() != leg.track.codec.mime_type.lower():
            limited_log.warning(
                "subscriber negotiated %s for a %s track", codec.mimeType, leg.track.codec
            )
            return  # never transcode: the leg stays silent
        sender = transceiver.sender
        native = hooks.take_over_socket(
            sender.transport,
            self._counters.native,
            _native_track_of,
            self._pump,
            self._counters.count_drop,
        )
        if native is None:  # DTLS not up yet: attached once the connection is
            self._unattached.append((transceiver, leg, params))
            return
        ext = HeaderExtensionsMap()
        ext.configure(params)
        ssrc, rtx_ssrc = hooks.sender_ssrcs(sender)
        leg.attach(
            hooks.RawSender(sender.transport),
            native,
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            payload_type=int(codec.payloadType or 0),
            rtx_payload_type=rtx,
            extension_ids=hooks.extension_ids(ext),
            mid=params.muxId,
            cname=params.rtcp.cname or "",
        )
        leg.track.request_keyframe()

    def _leg_rtcp(self, leg: Leg) -> Callable[[object], Awaitable[None]]:
        async def handle(packet: object) -> None:
            try:
                leg.on_rtcp(packet)  # type: ignore[arg-type]
            except Exception:
                self._counters.handler_errors += 1
                limited_log.exception("subscriber RTCP handling failed")

        return handle

    def _kick(self) -> None:
        if self._needs_offer and not self._awaiting_answer and self._has_published:
            self._spawn(self._offer())

    async def _offer(self) -> None:
        # aiortc starts a sender only if DTLS is already connected when the answer is applied
        # (RTCPeerConnection.__connect); an offer answered during the first handshake would
        # leave its senders unstarted for good. So renegotiation waits for the connection.
        await self._connected.wait()
        async with self._lock:
            if self.closed or self._awaiting_answer or not self._needs_offer:
                return
            if self.pc.signalingState != "stable":
                return
            self._needs_offer = False
            offer = await self.pc.createOffer()
            # Keep the extension ids of the first negotiation (browsers refuse a change).
            sdp = align_extmap_ids(offer.sdp, self._extmap_ids)
            await self.pc.setLocalDescription(RTCSessionDescription(sdp, "offer"))
            hooks.enforce_aes256_srtp(self.pc)
            self._expect_offered_codecs()
            self._awaiting_answer = True
            sdp = str(self.pc.localDescription.sdp)
        await self._events.send_offer(self.participant_id, sdp)

    # -- lifecycle -----------------------------------------------------------------------

    async def _watch_connect(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not self.closed and self.pc.connectionState != "connected":
            self._counters.peers_failed += 1
            await self._events.media_failed(self.participant_id, "connect_timeout")

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
            profile = self.srtp_profile()
            if profile != hooks.AES_256_GCM:
                # Belt and braces (only AES-256-GCM is offered): no media flows on this peer.
                self._counters.srtp_refused += 1
                await self._events.media_failed(self.participant_id, "srtp_profile")
                return
            natives = [
                hooks.take_over_socket(
                    dtls,
                    self._counters.native,
                    _native_track_of,
                    self._pump,
                    self._counters.count_drop,
                )
                for dtls in hooks.dtls_transports(self.pc)
            ]
            if None in natives:
                # Its legs could never be attached: tell the participant rather than stay mute.
                self._counters.peers_failed += 1
                await self._events.media_failed(self.participant_id, "data_plane")
                return
            waiting, self._unattached = self._unattached, []
            for transceiver, leg, params in waiting:
                if not leg.closed:
                    self._attach_leg(transceiver, leg, params)
            await self._events.media_connected(self.participant_id)
        elif state in ("failed", "closed") and not self.closed:
            self._close_native()
            self._counters.peers_failed += 1
            await self._events.media_failed(self.participant_id, "ice_or_dtls_failed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                self._counters.handler_errors += 1
                log.exception("peer task failed (participant %s)", self.participant_id)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            # Cancelled before its first step (a close right after publish): ``coro`` never
            # started, and would warn "coroutine ... was never awaited" when collected.
            coro.close()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(done)

    def _close_native(self) -> None:
        for dtls in hooks.dtls_transports(self.pc):
            hooks.close_native_transport(dtls)

    def _check_open(self) -> None:
        if self.closed:
            raise Conflict("peer is closed", code="peer_closed")

    async def close(self) -> None:
        """Close tracks, legs and the peer connection; idempotent."""
        if self.closed:
            return
        self.closed = True
        current = asyncio.current_task()
        others = [t for t in self._tasks if t is not current]
        for task in others:
            task.cancel()
        for track in self.published:
            track.close()
        for slot in self.slots:
            slot.leg.close()
        self.slots.clear()
        self._close_native()
        try:
            await self.pc.close()
        except Exception:  # an aiortc state a bad description left behind: close must not raise
            self._counters.handler_errors += 1
            log.exception(
                "closing the peer connection failed (participant %s)", self.participant_id
            )
        if others:
            await asyncio.gather(*others, return_exceptions=True)

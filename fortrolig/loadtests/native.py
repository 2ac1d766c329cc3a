"""The native load participant: a synthetic participant whose per-packet work is C.

aiortc and aioice still do signaling-driven SDP, ICE and DTLS, exactly as for the Python
participant. Once DTLS is up, the nominated socket and aiortc's SRTP sessions are handed to a
``_loadpath.Peer`` (fortrolig/loadtests/native/), as the SFU hands them to its data plane
(``fortrolig.media.aiortc_hooks.take_over_socket``): from then on C paces the pre-encoded clip
(``clip.py``), writes sequence numbers, timestamps and the VP8 payload descriptor, protects and
sends with ``sendmmsg``, and on the way in reads with ``recvmmsg``, unprotects and counts
packets, bytes, frames, loss, jitter and freezes without depacketising. PLI/FIR from the server
make the replay jump to the clip's next keyframe; sender reports go out once a second. STUN and
DTLS still reach aioice and aiortc (consent checks keep working).

One ``NativeEngine`` per worker process puts every peer's socket and a pacing timer behind one
epoll descriptor, so the event loop has a single reader however many participants it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pylibsrtp  # noqa: F401 - loaded before _loadpath.init() binds its libsrtp
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamTrack

from fortrolig.media import aiortc_hooks as hooks

from .clip import AUDIO_RATE, AUDIO_SAMPLES, VIDEO_CLOCK, Clip
from .participant import Participant

try:  # built by `pip install -e .` (make venv); the Python participant works without it
    from . import _loadpath
except ImportError:  # pragma: no cover - a build without a C compiler
    _loadpath = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TAKEOVER_TIMEOUT_S = 15.0
_SSRC_LINE = re.compile(r"^a=ssrc:(\d+) msid:(\S+) ", re.MULTILINE)


def available() -> bool:
    """Whether the C extension was built (``--engine native`` needs it)."""
    return _loadpath is not None


_bound: list[bool] = []  # once per process: the C side's libsrtp functions are set


def _bind() -> None:
    """Point the C side at the libsrtp that pylibsrtp loaded (found by the C side itself)."""
    if _bound:
        return
    _loadpath.init()
    _bound.append(True)


def srtp_pointer(session: Any) -> int:
    """The ``srtp_t`` of a pylibsrtp Session (the caller keeps the session alive).

    Read through the hooks module, the one place that may touch pylibsrtp's private state.
    """
    return hooks.srtp_pointer(session)


def native_clips(clip: Clip) -> tuple[_loadpath.Clip, _loadpath.Clip]:
    """The clip's audio and video as the C replay wants them (made once per worker)."""
    _bind()
    keyframes = set(clip.keyframes)
    video = _loadpath.Clip(
        True,
        list(clip.video),
        [i in keyframes for i in range(len(clip.video))],
        VIDEO_CLOCK // clip.profile.fps,
        1.0 / clip.profile.fps,
        list(clip.pts_jitter),
    )
    audio = _loadpath.Clip(
        False,
        list(clip.audio),
        [True] * len(clip.audio),
        AUDIO_SAMPLES,
        AUDIO_SAMPLES / AUDIO_RATE,
        [],
    )
    return audio, video


class NativeEngine:
    """The peers of one worker process behind one reader of the event loop."""

    def __init__(self, clip: Clip) -> None:
        self.audio, self.video = native_clips(clip)
        self.engine = _loadpath.Engine()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.engine.fd, self.engine.on_readable)

    def pause(self) -> None:
        """Stop every sender (the end of the measurement: nothing is in flight after it)."""
        self.engine.set_paused(True)

    def close(self) -> None:
        """Stop reading; idempotent."""
        if self.engine.fd >= 0:
            self._loop.remove_reader(self.engine.fd)
        self.engine.close()


class _Placeholder(MediaStreamTrack):
    """Gives a sendonly transceiver its m-line and msid; never read (the C side sends)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()  # pragma: no cover - hook_sender's RTP loop never asks


async def _idle() -> None:
    await asyncio.Event().wait()


def _ignore(*_: object) -> None:
    """Feedback aiortc still routes to the shell senders before the take-over."""


async def _ignore_rtcp(_: object) -> None:
    return None


@dataclass
class NativeStream:
    """One remote SSRC as the C side counted it (the fields the worker's report reads)."""

    kind: str
    owner: str
    ssrc: int
    packets: int
    bytes: int
    frames: int
    ts_frames: int
    expected: int
    jitter_ms: float
    freezes: int
    freeze_s: float
    first_frame_at: float | None

    @property
    def received(self) -> int:
        return self.packets

    @property
    def recovered(self) -> int:
        return self.packets if self.kind == "rtx" else 0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets) if self.kind != "rtx" else 0


class NativeLoadParticipant(Participant):
    """A participant whose media is sent and counted by the native engine."""

    def __init__(
        self, ws_url: str, token: str, engine: NativeEngine, name: str | None = None
    ) -> None:
        tracks: list[MediaStreamTrack] = [_Placeholder("audio"), _Placeholder("video")]
        super().__init__(ws_url, token, name=name, tracks=tracks)
        self.engine = engine
        self.peer: _loadpath.Peer | None = None
        self.samples: list[Any] = []  # no decode samples: nothing is depacketised
        self.first_peer_at: float | None = None
        self.errors: Counter[str] = Counter()
        self.takeover_error: str | None = None
        self._owners: dict[int, str] = {}
        self._final: dict[str, Any] | None = None
        self._takeover: asyncio.Task[None] | None = None

    def _prepare(self, pc: RTCPeerConnection) -> None:
        for transceiver in pc.getTransceivers():
            hooks.hook_sender(transceiver.sender, _ignore_rtcp, _ignore, _idle)

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind in ("joined", "participant_joined") and self.first_peer_at is None:
            if kind == "participant_joined" or msg["participants"]:
                self.first_peer_at = time.monotonic()
        elif kind == "error":
            self.errors[str(msg.get("code"))] += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        """Remote tracks are counted natively; aiortc's receivers never see a packet."""

    async def publish(self, welcome: dict[str, Any]) -> None:
        await super().publish(welcome)
        self._takeover = asyncio.get_running_loop().create_task(self._take_over())

    async def _answer(self, sdp: str) -> None:
        await super()._answer(sdp)
        self._learn_remote(sdp)

    def _learn_remote(self, sdp: str) -> None:
        for ssrc, stream in _SSRC_LINE.findall(sdp):
            self._owners[int(ssrc)] = stream
        if self.peer is not None and self.pc is not None:
            self.peer.set_payload_types(*_payload_types(self.pc.getTransceivers()))

    async def _take_over(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKEOVER_TIMEOUT_S
        while True:
            pc = self.pc
            if pc is None:
                return
            transports = hooks.dtls_transports(pc)
            found = hooks.nominated_socket(transports[0]) if transports else None
            if found is not None:
                break
            if loop.time() > deadline:
                self.takeover_error = "no_dtls"
                return
            await asyncio.sleep(0.01)
        self.peer = self._make_peer(found, pc)
        self._learn_remote(pc.remoteDescription.sdp if pc.remoteDescription else "")
        sock = found.protocol.transport.get_extra_info("socket")
        hooks.pause_datagram_reading(found.protocol.transport, sock.fileno())
        self.engine.engine.add(self.peer)

    def _make_peer(self, found: hooks.NominatedSocket, pc: RTCPeerConnection) -> _loadpath.Peer:
        protocol = found.protocol
        sock = protocol.transport.get_extra_info("socket")
        peer = _loadpath.Peer(
            sock.fileno(),
            found.remote[0],
            found.remote[1],
            srtp_pointer(found.rx),
            srtp_pointer(found.tx),
            (found.rx, found.tx),
            protocol.datagram_received,  # STUN (consent) and DTLS go on to aioice and aiortc
        )
        mid_id = hooks.extension_ids(hooks.receive_extensions(found.dtls))["mid"]
        for transceiver in pc.getTransceivers():
            track = transceiver.sender.track
            if not isinstance(track, _Placeholder):
                continue
            codec = next(
                c
                for c in hooks.negotiated_codecs(transceiver)
                if not c.mimeType.lower().endswith("/rtx")
            )
            peer.set_sender(
                self.engine.video if track.kind == "video" else self.engine.audio,
                hooks.sender_ssrcs(transceiver.sender)[0],
                int(codec.payloadType or 0),
                mid_id,
                (transceiver.mid or "").encode(),
                random.getrandbits(16),
                random.getrandbits(32),
            )
        return peer

    def _snapshot(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        return self.peer.stats() if self.peer is not None else {"streams": [], "received": {}}

    @property
    def stats(self) -> list[NativeStream]:
        """Per remote SSRC, what was received so far."""
        out = []
        for s in self._snapshot()["streams"]:
            owner = self._owners.get(int(s["ssrc"]), "?")
            fields = {k: s[k] for k in NativeStream.__dataclass_fields__ if k in s}
            out.append(NativeStream(owner=owner, **fields))
        return out

    def sent(self) -> dict[str, Any]:
        """What this participant sent: packets, bytes on the wire, frames, keyframe log."""
        snap = self._snapshot()
        audio, video = snap.get("audio", {}), snap.get("video", {})
        return {
            "packets_sent": audio.get("packets", 0) + video.get("packets", 0),
            "bytes_sent": audio.get("bytes", 0) + video.get("bytes", 0),
            "audio_packets_sent": audio.get("packets", 0),
            "video_packets_sent": video.get("packets", 0),
            "video_frames_sent": video.get("frames", 0),
            "keyframes_sent": [list(k) for k in video.get("keyframes", [])],
            "receive_counters": dict(snap.get("received", {})),
            "video_ts_frames": sum(s["ts_frames"] for s in snap["streams"] if s["kind"] == "video"),
            "video_packets_received": sum(
                s["packets"] for s in snap["streams"] if s["kind"] == "video"
            ),
        }

    def close_window(self, end: float) -> None:
        """The measurement ends at ``end`` (monotonic): a stall still running is a freeze."""
        if self.peer is not None and self._final is None:
            self.peer.close_window(end)

    def first_video_at(self) -> float | None:
        if self.takeover_error is not None:
            raise RuntimeError(self.takeover_error)
        return self.peer.first_frame_at() if self.peer is not None else None

    async def rtt_s(self) -> float | None:
        """The round-trip time from the server's receiver reports on our sender reports."""
        rtt = self.peer.rtt if self.peer is not None else -1.0
        return rtt if rtt >= 0 else None

    async def close(self) -> None:
        """Keep the final counts, release the socket and sessions, then close as usual."""
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
        if self.peer is not None:
            if self._final is None:
                self._final = self.peer.stats()
            self.engine.engine.remove(self.peer)
            self.peer.close()
        await super().close()


def _payload_types(transceivers: list[RTCRtpTransceiver]) -> tuple[list[int], list[int], list[int]]:
    """Received payload types by kind (audio, video, RTX), from every negotiated transceiver."""
    audio: set[int] = set()
    video: set[int] = set()
    rtx: set[int] = set()
    for transceiver in transceivers:
        for codec in hooks.negotiated_codecs(transceiver):
            mime = codec.mimeType.lower()
            if codec.payloadType is None:
                continue
            if mime.endswith("/rtx"):
                rtx.add(codec.payloadType)
            elif mime.startswith("audio/"):
                audio.add(codec.payloadType)
            elif mime.startswith("video/"):
                video.add(codec.payloadType)
    return sorted(audio), sorted(video), sorted(rtx)

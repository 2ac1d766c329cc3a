"""A programmatic participant speaking docs/protocol.md over aiohttp + aiortc.

Used by the integration tests and by ``fortrolig-load``'s workers. It publishes audio and video,
answers the server's renegotiation offers, counts frames per remote track, and records every
server message so tests can assert on the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy

from .sources import FrameCounter

log = logging.getLogger(__name__)

# How long close() waits for a closed connection's TLS shutdown to finish.
CLOSE_WAIT_S = 2.0
MAX_REDIRECTS = 3
CONNECT_TIMEOUT_S = 5.0  # WebSocket upgrade plus hello → welcome
CLOSE_REDIRECT = 4307
# Close codes after which reconnecting cannot help (docs/protocol.md), and refusals that may
# pass: the same lists the browser page keeps.
FINAL_CLOSE = frozenset({1000, 1002, 1009, 4401, 4403, 4409})
RETRYABLE = frozenset({"no_node_in_region", "coordination_unavailable", "placement_busy"})


@dataclass
class RemoteTrack:
    """A track received from the SFU, grouped by the publishing participant (msid stream)."""

    participant_id: str
    kind: str  # "audio", "video" (a camera) or "screen"
    counter: FrameCounter


@dataclass
class Participant:
    """One simulated browser."""

    ws_url: str
    token: str
    name: str | None = None
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    remote: list[RemoteTrack] = field(default_factory=list)
    participant_id: str | None = None
    resume_token: str | None = None
    close_code: int | None = None
    home_ws_url: str | None = None  # where the participant first connected (a redirect moves on)
    redirects: list[str] = field(default_factory=list)  # owner URLs it was sent to
    # Other nodes' WebSockets to try when the first one is down (behind a load balancer the
    # one public URL reaches a live node; on loopback the tests name the nodes).
    doors: list[str] = field(default_factory=list)
    heartbeat_s: float = 2.0
    # wss:// against a node whose CA is not in the system store (tests, a staging CA).
    ssl_context: ssl.SSLContext | None = None
    auto_resume: bool = False  # reconnect by itself when the connection is lost (a browser does)
    resumes: int = 0
    resume_failures: int = 0
    _closing: bool = False
    _resumer: asyncio.Task[None] | None = None
    pc: RTCPeerConnection | None = None
    pc_factory: Callable[[RTCConfiguration], RTCPeerConnection] = RTCPeerConnection
    _http: aiohttp.ClientSession | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task[None] | None = None
    _consumers: list[asyncio.Task[None]] = field(default_factory=list)
    _inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _offers: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _negotiator: asyncio.Task[None] | None = None

    async def connect(self) -> dict[str, Any]:
        """Open the WebSocket and say hello; returns the ``welcome`` (or the error).

        A ``redirect`` (another node serves the room) is followed: hello again on the owner's
        WebSocket with the resume token it carries, up to :data:`MAX_REDIRECTS` times.
        """
        if self.home_ws_url is None:
            self.home_ws_url = self.ws_url
        if self._http is None:
            self._http = aiohttp.ClientSession()
        token = self.token
        for _ in range(MAX_REDIRECTS + 1):
            # Bounded: a frozen node accepts the TCP connection and never answers the upgrade.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                first = await self._hello(token)
            if first["type"] != "redirect":
                break
            self.redirects.append(first["url"])
            token, self.ws_url = first["resume_token"], first["ws_url"]
            self.resume_token = token
            await self._drop_ws()
        if first["type"] == "welcome":
            self.participant_id = first["participant_id"]
            self.resume_token = first["resume_token"]
        return first

    async def _hello(self, token: str) -> dict[str, Any]:
        assert self._http is not None
        # heartbeat: a node frozen or cut off (no TCP reset) is noticed within 2 heartbeats.
        self._ws = await self._http.ws_connect(
            self.ws_url,
            autoping=True,
            heartbeat=self.heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
            ssl=self.ssl_context if self.ssl_context is not None else True,
        )
        self._inbox = asyncio.Queue()
        self.close_code = None  # of this connection (a redirect closed the previous one)
        await self.send({"type": "hello", "v": 1, "token": token})
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return await self.expect("welcome", "error", "redirect")

    async def _drop_ws(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._ws is not None:
            await _close_ws(self._ws)

    async def join(self) -> dict[str, Any]:
        """Join the room; returns ``joined`` (or the error)."""
        await self.send({"type": "join", "name": self.name} if self.name else {"type": "join"})
        return await self.expect("joined", "error")

    async def publish(self, welcome: dict[str, Any]) -> None:
        """Create the peer connection and make the one publishing offer."""
        servers = [RTCIceServer(**s) for s in welcome.get("ice_servers", [])]
        config = RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        pc = self.pc_factory(config)
        self.pc = pc
        for track in self.tracks:
            pc.addTransceiver(track, direction="sendonly")
        pc.on("track", self._on_track)
        self._prepare(pc)
        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await self.expect("answer", "error")
        if answer["type"] == "error":
            raise RuntimeError(f"offer refused: {answer}")
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        # Server offers may already be queued: apply them in order, only now that the
        # publishing exchange is complete (the peer connection is stable).
        self._negotiator = asyncio.get_running_loop().create_task(self._negotiate())

    async def start(self) -> dict[str, Any]:
        """connect + join + publish; returns the welcome."""
        welcome = await self.connect()
        if welcome["type"] != "welcome":
            raise RuntimeError(f"hello refused: {welcome}")
        joined = await self.join()
        if joined["type"] != "joined":
            raise RuntimeError(f"join refused: {joined}")
        await self.publish(welcome)
        return welcome

    def _prepare(self, pc: RTCPeerConnection) -> None:
        """Called once the publishing transceivers exist, before the offer (for subclasses)."""

    def _on_message(self, msg: dict[str, Any]) -> None:
        """Called for every server message as it arrives (for subclasses)."""

    def _on_track(self, track: MediaStreamTrack) -> None:
        owner = self._owner_of(track)
        counter = FrameCounter(track.kind)
        screen = str(track.id).endswith("-screen")  # a shared screen: counted apart
        self.remote.append(RemoteTrack(owner, "screen" if screen else track.kind, counter))
        self._consumers.append(asyncio.get_running_loop().create_task(counter.consume(track)))

    def _owner_of(self, track: MediaStreamTrack) -> str:
        # The SFU names each remote track "<participant>-<kind>" (a=msid), so the owner is
        # known without extra signaling.
        track_id = str(track.id)
        return track_id.rsplit("-", 1)[0] if "-" in track_id else track_id

    async def send(self, message: dict[str, Any] | str) -> None:
        """Send a JSON message (or a raw string, for bad-input tests)."""
        assert self._ws is not None
        raw = message if isinstance(message, str) else json.dumps(message)
        await self._ws.send_str(raw)

    async def expect(self, *types: str, within: float = 10.0) -> dict[str, Any]:
        """The next server message of one of ``types`` (others stay recorded in messages)."""
        async with asyncio.timeout(within):
            while True:
                msg = await self._inbox.get()
                if msg["type"] in types:
                    return msg

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                break
            msg = json.loads(raw.data)
            self.messages.append(msg)
            self._on_message(msg)
            if msg["type"] == "offer":
                self._offers.put_nowait(msg["sdp"])
            else:
                self._inbox.put_nowait(msg)
        self.close_code = self._ws.close_code
        self._inbox.put_nowait({"type": "closed", "code": self.close_code})
        if self.close_code != CLOSE_REDIRECT:  # a redirect is followed by connect() itself
            self._connection_ended()

    async def resume(self, *, within: float = 30.0) -> dict[str, Any]:
        """Get back into the room after the connection was lost: reconnect where it first
        connected (which sends it on to the room's current owner), ``hello`` with the newest
        resume token, ``join`` and publish again on a new peer connection. Retries with backoff
        for ``within`` seconds; returns the new ``welcome``."""
        if self.resume_token is None:
            raise RuntimeError("no resume token: the participant never joined")
        deadline = asyncio.get_running_loop().time() + within
        delay = 0.25
        home = self.home_ws_url or self.ws_url
        doors = [home, *(d for d in self.doors if d != home)]
        for attempt in itertools.count():
            await self._drop_ws()
            await self._drop_peer()
            self.ws_url, self.token = doors[attempt % len(doors)], self.resume_token
            try:
                welcome = await self.connect()
                if welcome["type"] == "welcome":
                    joined = await self.join()
                    if joined["type"] == "joined":
                        await self.publish(welcome)
                        self.resumes += 1
                        return welcome
                    raise RuntimeError(f"join refused on resume: {joined}")
                if welcome.get("code") not in RETRYABLE:
                    raise RuntimeError(f"resume refused: {welcome}")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.info("resume attempt %d at %s failed: %r", attempt, self.ws_url, exc)
            if asyncio.get_running_loop().time() + delay > deadline:
                raise TimeoutError(f"could not resume within {within} s")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count() is endless

    async def _drop_peer(self) -> None:
        if self._negotiator is not None:
            self._negotiator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._negotiator
            self._negotiator = None
        self._offers = asyncio.Queue()
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()
        # A source track handed to a second aiortc peer connection after the first one closed
        # sends nothing there (seen here: 0 frames at the far end); sources that can, start
        # afresh. A browser keeps its camera track across peer connections.
        renewed = []
        for track in self.tracks:
            fresh = getattr(track, "fresh", None)
            if callable(fresh):
                track.stop()
                renewed.append(fresh())
            else:
                renewed.append(track)
        self.tracks = renewed

    def _connection_ended(self) -> None:
        """The reader saw the WebSocket close: resume by itself unless that was final."""
        if not self.auto_resume or self._closing or self._resumer is not None:
            return
        if self.close_code in FINAL_CLOSE or self.participant_id is None:
            return
        self._resumer = asyncio.get_running_loop().create_task(self._auto_resume())

    async def _auto_resume(self) -> None:
        try:
            await self.resume()
        except Exception as exc:  # recorded; the caller sees it through resume_failures
            log.warning("automatic resume failed: %r", exc)
            self.resume_failures += 1
        finally:
            self._resumer = None

    async def _negotiate(self) -> None:
        while True:
            sdp = await self._offers.get()
            try:
                await self._answer(sdp)
            except Exception:
                log.exception("could not answer the server's offer")

    async def _answer(self, sdp: str) -> None:
        pc = self.pc
        if pc is None:
            return
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send({"type": "answer", "sdp": pc.localDescription.sdp})

    def frames_from(self, participant_id: str, kind: str) -> int:
        """Frames decoded so far from one remote participant's track of ``kind``."""
        return sum(
            r.counter.frames
            for r in self.remote
            if r.participant_id == participant_id and r.kind == kind
        )

    def counter_for(self, participant_id: str, kind: str) -> FrameCounter | None:
        """The frame counter of a remote participant's track."""
        for r in self.remote:
            if r.participant_id == participant_id and r.kind == kind:
                return r.counter
        return None

    async def close(self) -> None:
        """Close everything this participant opened; idempotent."""
        self._closing = True
        if self._resumer is not None:
            self._resumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resumer
        for task in self._consumers:
            task.cancel()
        if self._negotiator is not None:
            self._negotiator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._negotiator
        if self._ws is not None and not self._ws.closed and self.participant_id is not None:
            # Done for good, as the page's Leave button: without it the node holds our place
            # for the rejoin grace (it cannot tell a finished participant from a dropped one).
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_str(json.dumps({"type": "leave"}))
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        for track in self.tracks:
            track.stop()
        if self._ws is not None:
            await _close_ws(self._ws)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()
            self._http = None
        await asyncio.gather(*self._consumers, return_exceptions=True)


async def _close_ws(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close ``ws`` (idempotent) and wait, bounded, until its connection is really gone.

    A TLS connection shuts down asynchronously after ``close()`` (close_notify both ways), and
    aiohttp no longer tracks a connection a WebSocket took over: without this wait a loop that
    ends right after ``close()`` leaves the socket open (a ResourceWarning when it is collected).
    """
    conn = ws._response.connection  # the upgraded connection the WebSocket owns
    protocol = conn.protocol if conn is not None else None
    gone = protocol.closed if protocol is not None else None
    await ws.close()
    if gone is not None:
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(gone), CLOSE_WAIT_S)

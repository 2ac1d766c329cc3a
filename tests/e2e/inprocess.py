"""A whole node inside the test's own event loop, so that a test can look inside its SFU.

The e2e tests run nodes as `fortrolig serve` processes; a test that must see what the server
itself holds (the media frames it forwards) runs the same composition root, `build_app`, on
127.0.0.1 with the SFU in-process (one media worker), and attaches a subscriber to a room
through the SFU's public subscriber interface (fortrolig/media/subscriber.py), as the recorder
does. Nothing in the server is changed for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aioice.ice
from aiohttp import web
from aiortc import rtcrtpreceiver, rtcrtpsender

from fortrolig.app.server import MEDIA_KEY, build_app
from fortrolig.core.config import load_config
from fortrolig.media.sfu import Sfu
from fortrolig.media.subscriber import MediaPacket, TrackSource
from fortrolig.recording.depacketize import Vp8Depacketizer, Vp8Frame
from tests.conftest import Server, free_port


@dataclass
class Capture:
    """Every RTP packet of a room as the SFU holds it (after SRTP, before forwarding)."""

    sources: dict[str, TrackSource] = field(default_factory=dict)
    packets: dict[str, list[MediaPacket]] = field(default_factory=lambda: defaultdict(list))

    def track_added(self, source: TrackSource) -> None:
        self.sources[source.track_id] = source

    def track_removed(self, track_id: str) -> None:
        pass

    def rtp(self, track_id: str, packet: MediaPacket) -> None:
        self.packets[track_id].append(packet)

    def track_of(self, participant_id: str, kind: str) -> str:
        for track_id, source in self.sources.items():
            if source.participant_id == participant_id and source.kind == kind:
                return track_id
        raise AssertionError(f"no {kind} track of {participant_id}: {list(self.sources)}")

    def vp8_frames(
        self, participant_id: str, since: float = 0.0, until: float = float("inf")
    ) -> list[Vp8Frame]:
        """The whole VP8 frames of a participant's video that arrived between ``since`` and
        ``until`` (``time.monotonic()``), assembled as the recorder assembles them."""
        packets = list(self.packets[self.track_of(participant_id, "video")])
        depacketizer = Vp8Depacketizer()
        frames: list[Vp8Frame] = []
        last: int | None = None
        for p in packets:
            gap = last is not None and p.sequence_number != (last + 1) & 0xFFFF
            last = p.sequence_number
            done = depacketizer.push(p.timestamp, p.marker, p.payload, gap)
            if since <= p.arrival <= until:
                frames.extend(done)
        return frames

    def opus_frames(self, participant_id: str, since: float = 0.0) -> list[bytes]:
        """The Opus payloads (one frame each) of a participant's audio after ``since``."""
        packets = self.packets[self.track_of(participant_id, "audio")]
        return [p.payload for p in packets if p.arrival >= since and p.payload]


@dataclass
class InProcessNode:
    """A node served from this event loop; :meth:`session` as the process node's."""

    base_url: str
    data_dir: Path
    app: web.Application

    @property
    def sfu(self) -> Sfu:
        media = self.app[MEDIA_KEY]
        assert isinstance(media, Sfu), "one media worker: the SFU runs in this process"
        return media

    async def session(self, **kw: Any) -> dict[str, Any]:
        # Server.session speaks blocking HTTP: from a thread, or it would wait on this loop.
        return await asyncio.to_thread(self._shim().session, **kw)

    async def client_url(self, session: dict[str, Any]) -> str:
        """One more client link into ``session``'s room (each link is single use)."""
        path = f"/api/v1/rooms/{session['room_id']}/tokens"
        body = {"role": "client"}
        link = await asyncio.to_thread(self._shim()._post, path, body, session["access_token"])
        return str(link["url"])

    def _shim(self) -> Server:
        return Server(self.base_url, self.data_dir, cast(Any, None), self.data_dir / "log")


@contextlib.asynccontextmanager
async def inprocess_node(tmp: Path) -> AsyncIterator[InProcessNode]:
    """A node on 127.0.0.1 in this loop (SQLite, keys and data in ``tmp``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FORTROLIG_CONFIG"}
    config = load_config(
        None,
        env,
        {
            "server.host": "127.0.0.1",
            "server.port": port,
            "server.data_dir": str(tmp / "data"),
            "media.workers": 1,
        },
    )
    # The SFU sets process-wide aiortc and aioice hooks (no decoder or encoder may be made, the
    # ICE host addresses): in a `fortrolig serve` process they are right; in the test process
    # they would starve the aiortc peers of later tests, so they are put back afterwards.
    saved = (rtcrtpreceiver.get_decoder, rtcrtpsender.get_encoder, aioice.ice.get_host_addresses)
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield InProcessNode(f"http://127.0.0.1:{port}", config.server.data_dir, app)
    finally:
        await runner.cleanup()
        rtcrtpreceiver.get_decoder, rtcrtpsender.get_encoder, aioice.ice.get_host_addresses = saved

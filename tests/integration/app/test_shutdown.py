"""SIGTERM with a consultation open: the node drains (rooms handed over: close 4503, the clients
reconnect to whichever node serves the room next), then closes what is left with 1001 (going
away) and exits 0 at once (``coordination.drain_deadline_s`` is 0 by default)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from tests.conftest import start_server, stop_server

CONTAINER_STOP_GRACE_S = 10  # `docker stop`'s default before SIGKILL


async def test_sigterm_closes_websockets_and_exits_promptly(tmp_path: Path) -> None:
    node = start_server(tmp_path, {"FORTROLIG_MEDIA__WORKERS": "1"})
    session = node.session()
    participants = [
        Participant(
            node.ws_url,
            session[f"{role}_token"],
            tracks=[PatternVideoTrack(200, 90, 40, 160, 120, 15), ToneAudioTrack()],
        )
        for role in ("practitioner", "client")
    ]
    # A third connection that never joined a room is closed with 1001 (going away).
    idle = Participant(node.ws_url, node.session()["client_token"])
    try:
        for p in participants:
            await p.start()
        assert (await idle.connect())["type"] == "welcome"
        start = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(node.proc.wait, CONTAINER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running: {node.log_path.read_text()}") from None
        elapsed = time.monotonic() - start
        for p in participants:
            await p.expect("closed", within=5)
        await idle.expect("closed", within=5)
        assert idle.close_code == 1001
        assert code == 0, node.log_path.read_text()
        assert elapsed < CONTAINER_STOP_GRACE_S / 2, elapsed
        assert [p.close_code for p in participants] == [4503, 4503]
    finally:
        for p in [*participants, idle]:
            await p.close()
        if node.proc.poll() is None:
            stop_server(node)

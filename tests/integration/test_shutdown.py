"""SIGTERM with a consultation open: clients get 1001 (going away) and the node exits 0 at once."""

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
    try:
        for p in participants:
            await p.start()
        start = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(node.proc.wait, CONTAINER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running: {node.log_path.read_text()}") from None
        elapsed = time.monotonic() - start
        for p in participants:
            await p.expect("closed", within=5)
        assert code == 0, node.log_path.read_text()
        assert elapsed < CONTAINER_STOP_GRACE_S / 2, elapsed
        assert [p.close_code for p in participants] == [1001, 1001]
        assert "closing 2 signaling connections" in node.log_path.read_text()
    finally:
        for p in participants:
            await p.close()
        if node.proc.poll() is None:
            stop_server(node)

"""A recorded consultation: two aiortc participants through an SFU process with a Recorder.

The SFU runs in its own process (bench.servers' ``fortrolig-recorded`` kind: Sfu with the
CodecGuard installed and a Recorder attached to the room), so that this test process may encode
and decode while the server process must not. Each participant publishes a video track that
flashes white at the start of every second and an audio track that beeps at the same instants
(fortrolig.loadtests.sources). The second participant joins late, so the recording has a part
with the first participant alone and a part with both. The test decrypts the stored parts,
decodes them with PyAV and measures flash against beep.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from bench.common import wait_until
from bench.servers import server_main
from bench.wire import Message, RpcClient
from fortrolig.loadtests.sources import BeepAudioTrack, FlashVideoTrack, SyncClock
from fortrolig.recording.keys import file_associated_data
from fortrolig.recording.stream_aead import SegmentReader, StreamIntegrityError
from tests.support.av_sync import analyse, skews

RECORDING_ID = "bench-recording"  # what the bench server names its recording
LATE_JOIN_S = 4.0
TOGETHER_S = 12.0
MAX_SKEW_S = 0.080

pytestmark = pytest.mark.timeout(150)


class Client:
    """One participant: publishes flash + beep, answers the SFU's offers."""

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.clock = SyncClock()
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(configuration=config)
        self.pc.addTransceiver(BeepAudioTrack(self.clock), direction="sendonly")
        self.pc.addTransceiver(FlashVideoTrack(self.clock), direction="sendonly")

    async def join(self, rpc: RpcClient) -> None:
        await rpc.call("open_peer", pid=self.pid)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await rpc.call("publish", pid=self.pid, sdp=self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def on_offer(self, rpc: RpcClient, sdp: str) -> None:
        # The SFU may offer before this client applied the answer to its own offer.
        await wait_until(lambda: self.pc.signalingState == "stable", 10.0)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await rpc.call("answer", pid=self.pid, sdp=self.pc.localDescription.sdp)


@dataclass
class Node:
    rpc: RpcClient
    clients: dict[str, Client]
    record_dir: Path


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    ctx = mp.get_context("spawn")
    socket_path = str(tmp_path / "control.sock")
    record_dir = tmp_path / "recordings"
    record_dir.mkdir()
    ready_rx, ready_tx = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=server_main,
        args=("fortrolig-recorded", socket_path, ready_tx, "127.0.0.1", str(record_dir)),
        daemon=True,
    )
    proc.start()
    clients: dict[str, Client] = {}
    tasks: set[asyncio.Task[None]] = set()
    try:
        assert ready_rx.poll(60), "SFU process did not start"

        def on_event(message: Message) -> None:
            if message.get("ev") == "offer":
                client = clients[str(message["pid"])]
                task = asyncio.get_running_loop().create_task(
                    client.on_offer(rpc, str(message["sdp"]))
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        rpc = await RpcClient.connect(socket_path, on_event)
        yield Node(rpc, clients, record_dir)
        for client in clients.values():
            await client.pc.close()
        await rpc.call("shutdown")
        await rpc.close()
    finally:
        proc.join(timeout=15)
        if proc.is_alive():
            proc.terminate()  # that PID only
            proc.join(timeout=5)


async def join(node: Node, pid: str) -> Client:
    client = Client(pid)
    node.clients[pid] = client
    await client.join(node.rpc)
    return client


def decrypt_part(node: Node, key: bytes, part: dict[str, Any]) -> bytes:
    path = node.record_dir / part["name"]
    with open(path, "rb") as f:
        return SegmentReader(f, key, file_associated_data(RECORDING_ID, part["index"])).read_all()


async def test_a_recorded_consultation_decrypts_decodes_and_stays_in_sync(node: Node) -> None:
    await join(node, "practitioner")
    await asyncio.sleep(LATE_JOIN_S)
    await join(node, "client")
    await asyncio.sleep(TOGETHER_S)
    assert (await node.rpc.call("codec_instances"))["codec_instances"] == 0
    stopped = await node.rpc.call("record_stop")
    key = bytes.fromhex(stopped["key"])
    parts = stopped["parts"]
    assert stopped["codecs_opened"] == 0 and stopped["codec_instances"] == 0

    # The late joiner starts a new part; the last part has both participants' tracks.
    assert len(parts) == 2, parts
    first, last = parts
    assert {t[0] for t in first["tracks"]} == {"practitioner-audio", "practitioner-video"}
    assert {t[0] for t in last["tracks"]} == {
        "practitioner-audio",
        "practitioner-video",
        "client-audio",
        "client-video",
    }
    assert TOGETHER_S - 3 < last["duration_s"] < TOGETHER_S + 1, last

    # Only ciphertext on disk: no WebM magic in any stored file.
    stored = sorted(node.record_dir.iterdir())
    assert [p.name for p in stored] == sorted(p["name"] for p in parts)
    for path in stored:
        assert b"webm" not in path.read_bytes() and b"OpusHead" not in path.read_bytes()

    tracks = analyse(decrypt_part(node, key, last))
    assert set(tracks) == {t[0] for t in last["tracks"]}
    for title, info in tracks.items():
        # every track runs (nearly) the whole part
        assert info["last"] - info["first"] > last["duration_s"] - 2.0, (title, info)
    for who in ("practitioner", "client"):
        video, audio = tracks[f"{who}-video"]["marks"], tracks[f"{who}-audio"]["marks"]
        measured = skews(video, audio)
        assert len(measured) >= TOGETHER_S - 4, (who, video, audio)
        assert max(abs(s) for s in measured) < MAX_SKEW_S, (who, measured)
        print(
            f"{who}: {len(measured)} marks, flash - beep ms: {[round(s * 1000) for s in measured]}"
        )
    print("parts:", [(p["index"], p["duration_s"], p["frames"], len(p["tracks"])) for p in parts])


async def test_a_flipped_byte_anywhere_is_refused(node: Node) -> None:
    await join(node, "practitioner")
    await asyncio.sleep(4.0)
    stopped = await node.rpc.call("record_stop")
    key = bytes.fromhex(stopped["key"])
    part = stopped["parts"][0]
    path = node.record_dir / part["name"]
    good = path.read_bytes()
    decrypt_part(node, key, part)  # intact: reads
    for position in (0, 5, 40, 41, len(good) // 2, len(good) - 1):
        bad = bytearray(good)
        bad[position] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(StreamIntegrityError):
            decrypt_part(node, key, part)
    path.write_bytes(good[:-1])  # truncated
    with pytest.raises(StreamIntegrityError):
        decrypt_part(node, key, part)

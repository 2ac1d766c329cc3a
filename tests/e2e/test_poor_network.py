"""A client on a poor network: 5 % loss with 150 ms RTT, a 20-second blackout, a link too poor
for video — in network namespaces the test creates (tests/support/impaired_net.py).

The node and the practitioner's Chromium are on the server side of the link; the client's
Chromium is on the other side, so everything of the client (signaling, ICE, media) crosses the
impaired wire. What must hold is what a user would notice, read from each page's getStats: the
call keeps audio and video (freezes counted and bounded), it recovers from a blackout by itself,
and a link too poor for video falls back to audio only, says so, and comes back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, stop_server
from tests.e2e.conftest import Browsers, RoomPage, eventually, launch
from tests.e2e.lab import secure, start_lab_node
from tests.e2e.test_browser_consultation import decodes_video_from, inbound
from tests.support.impaired_net import CLIENT_ADDR, SERVER_ADDR, ImpairedLink

# Alone: an emulated link's freezes and timings are what is measured, not the runner's load.
pytestmark = [pytest.mark.timeout(240), pytest.mark.alone]
WINDOW_S = 20.0  # how long the impaired call is measured
ONE_WAY_MS = 75  # each direction: 150 ms round trip
LOSS = 0.05


@pytest.fixture
def node(link: ImpairedLink, tmp_path: Path) -> Iterator[Server]:
    server = start_lab_node(tmp_path)
    yield server
    stop_server(server)


@pytest.fixture
async def near(node: Server, tmp_path: Path) -> AsyncIterator[Browsers]:
    """Chromium on the server's side of the link (the practitioner's good connection)."""
    (tmp_path / "near").mkdir()
    async with launch(tmp_path / "near", secure(node), ice_addresses=(SERVER_ADDR,)) as holder:
        yield holder


@pytest.fixture
async def far(link: ImpairedLink, node: Server, tmp_path: Path) -> AsyncIterator[Browsers]:
    """Chromium beyond the impaired wire (the client)."""
    (tmp_path / "far").mkdir()
    async with launch(
        tmp_path / "far", secure(node), executable=link.chromium, ice_addresses=(CLIENT_ADDR,)
    ) as holder:
        yield holder


async def in_call(node: Server, near: Browsers, far: Browsers) -> tuple[RoomPage, RoomPage]:
    session = node.session()
    doctor = await near.open(session["practitioner_url"], "Dr. Ørsted")
    client = await far.open(session["client_url"], "Klient")
    for page in (doctor, client):
        await page.wait_state("in_session", within=30)
    await decodes_video_from(client, await doctor.participant_id(), limit=30)
    await decodes_video_from(doctor, await client.participant_id(), limit=30)
    return doctor, client


async def received(page: RoomPage, sender: str) -> dict[str, Any]:
    """What ``page`` received from ``sender`` so far (video and audio counters), and when."""
    stats = await page.stats()
    video, audio = inbound(stats, sender, "video"), inbound(stats, sender, "audio")
    return {
        "t": time.monotonic(),
        "frames": video.get("framesDecoded") or 0,
        "freezes": video.get("freezeCount") or 0,
        "frozen_s": video.get("totalFreezesDuration") or 0.0,
        "audio_packets": audio.get("packetsReceived") or 0,
        "samples": audio.get("totalSamplesReceived") or 0,
        "concealed": audio.get("concealedSamples") or 0,
    }


def change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


async def quality(page: RoomPage) -> dict[str, Any]:
    return dict(await page.page.evaluate("window.fortrolig.quality()"))


async def test_five_percent_loss_and_150_ms_rtt_keep_audio_and_video(
    link: ImpairedLink, node: Server, near: Browsers, far: Browsers, tmp_path: Path
) -> None:
    doctor, client = await in_call(node, near, far)
    pid_d, pid_c = await doctor.participant_id(), await client.participant_id()
    link.impair(delay_ms=ONE_WAY_MS, loss=LOSS)
    wire_before = link.stats()
    await asyncio.sleep(5)  # the browsers' estimates settle on the impaired link
    start = {"client": await received(client, pid_d), "doctor": await received(doctor, pid_c)}
    await asyncio.sleep(WINDOW_S)
    end = {"client": await received(client, pid_d), "doctor": await received(doctor, pid_c)}
    wire = {k: v - wire_before[k] for k, v in link.stats().items()}
    dropped = wire["dropped"] / (wire["dropped"] + wire["forwarded"])
    print(f"wire: {wire}, {dropped:.1%} dropped")
    # The SFU asked the client for what its uplink lost and forwarded the retransmissions.
    rtx = node.metric("fortrolig_media_rtx_received_total")
    print(
        "SFU: "
        + ", ".join(
            f"{node.metric(f'fortrolig_media_{name}_total'):.0f} {name}"
            for name in (
                "nack_sent",
                "rtx_received",
                "rtx_discarded",
                "nack_received",
                "retransmitted",
                "nack_unanswered",
                "nack_given_up",
                "pli_received",
                "pli_sent",
                "pli_suppressed",
            )
        )
    )
    assert rtx > 0
    assert 0.03 < dropped < 0.08, wire  # the impairment is real

    for who, d in ((who, change(start[who], end[who])) for who in start):
        fps = d["frames"] / d["t"]
        concealed = d["concealed"] / max(1, d["samples"])
        print(
            f"{who} receives: {fps:.1f} fps, {d['freezes']} freezes, {d['frozen_s']:.2f} s frozen,"
            f" {d['audio_packets']} audio packets, {concealed:.1%} of audio concealed"
        )
        # Video keeps moving: freezes are counted by the browser and stay bounded. The
        # practitioner's side freezes for about one client round trip (0.2-0.4 s) per video
        # packet the client's uplink loses; measured 1.1-2.8 s of 20 s, up to 6 s when its
        # Chromium also asked for a keyframe. Before the SFU re-asked by the publisher's answer
        # time (it re-asked once a second) it was up to 8 s.
        assert fps > 8, (who, d)
        assert d["frozen_s"] < 0.4 * d["t"], (who, d)
        # Audio keeps coming (Opus sends 50 packets a second), little of it concealed.
        assert d["audio_packets"] > 0.8 * 50 * d["t"] * (1 - LOSS), (who, d)
        assert concealed < 0.15, (who, d)

    # The client's page grades its connection below good; the practitioner's own is good, and
    # it shows the client's tile below good (the client's report and what arrives from it).
    async def graded() -> bool:
        c, d = await quality(client), await quality(doctor)
        return c["self"] in ("fair", "poor") and d["peers"].get(pid_c) in ("fair", "poor")

    await eventually(graded, 10, "the client's connection graded below good")
    # The practitioner's own grade is not asserted: on a loaded runner its RTT alone reads poor.
    assert not (await quality(client))["audioOnly"]  # 5 % loss is not too poor for video
    level = await doctor.page.get_attribute(
        f'.tile[data-participant-id="{pid_c}"] .quality', "data-level"
    )
    assert level in ("fair", "poor")
    await doctor.screenshot(tmp_path, "lossy-practitioner")
    await client.screenshot(tmp_path, "lossy-client")


async def test_a_20_second_blackout_recovers_by_itself(
    link: ImpairedLink, node: Server, near: Browsers, far: Browsers, tmp_path: Path
) -> None:
    doctor, client = await in_call(node, near, far)
    pid_d = await doctor.participant_id()
    link.blackout(True)
    await asyncio.sleep(20)
    # During it, the practitioner sees the client away (its place held), not gone.
    listed = await doctor.page.evaluate("window.fortrolig.participants()")
    away = [p["id"] for p in listed if p.get("away")]
    await doctor.screenshot(tmp_path, "blackout-practitioner")
    link.blackout(False)
    back_at = time.monotonic()
    for page in (doctor, client):
        await page.wait_state("in_session", within=90)
    pid_c = await client.participant_id()
    await decodes_video_from(client, pid_d, limit=60)
    await decodes_video_from(doctor, pid_c, limit=60)
    print(
        f"blackout: away on the practitioner's page {bool(away)}; video both ways again"
        f" {time.monotonic() - back_at:.1f} s after the link came back;"
        f" client states {await client.page.evaluate('window.fortrolig.states()')}"
    )
    await doctor.screenshot(tmp_path, "recovered-practitioner")
    await client.screenshot(tmp_path, "recovered-client")


async def test_a_link_too_poor_for_video_falls_back_to_audio_and_comes_back(
    link: ImpairedLink, node: Server, near: Browsers, far: Browsers, tmp_path: Path
) -> None:
    doctor, client = await in_call(node, near, far)
    pid_c = await client.participant_id()
    link.impair(delay_ms=ONE_WAY_MS, loss=0.3)

    async def audio_only() -> bool:
        q = await quality(client)
        seen = {p["id"]: p for p in await doctor.page.evaluate("window.fortrolig.participants()")}
        return q["audioOnly"] and q["notice"] == "net.audioonly" and seen[pid_c]["audio_only"]

    await eventually(audio_only, 40, "the client falls back to audio only")
    assert await client.page.is_visible("#net-notice")
    assert await client.page.is_visible("#net-retry")
    tile = f'.tile[data-participant-id="{pid_c}"]'
    assert await doctor.page.get_attribute(tile, "data-audio-only") == "true"
    await client.screenshot(tmp_path, "audio-only-client")
    await doctor.screenshot(tmp_path, "audio-only-practitioner")
    # Sound still goes: the practitioner keeps receiving the client's audio, and no video.
    before = inbound(await doctor.stats(), pid_c, "audio").get("packetsReceived") or 0
    encoded = await camera_frames_encoded(client)
    await asyncio.sleep(3)
    after = inbound(await doctor.stats(), pid_c, "audio").get("packetsReceived") or 0
    assert after > before, (before, after)
    assert await camera_frames_encoded(client) == encoded  # the camera sender sends nothing

    # The link gets better; the client asks for video again and the practitioner sees it.
    link.impair(delay_ms=ONE_WAY_MS, loss=0.0)
    await client.page.click("#net-retry")
    await eventually(lambda: _not_audio_only(client), 10, "video again")
    await decodes_video_from(doctor, pid_c, limit=30)

    # The flag comes by signaling, the video by media: either may arrive first.
    async def flag_cleared() -> bool:
        return await doctor.page.get_attribute(tile, "data-audio-only") == "false"

    await eventually(flag_cleared, 10, "the practitioner's tile no longer audio-only")


async def camera_frames_encoded(page: RoomPage) -> int:
    return sum(
        s.get("framesEncoded") or 0
        for s in (await page.stats())["outbound"]
        if s["kind"] == "video"
    )


async def _not_audio_only(page: RoomPage) -> bool:
    return not (await quality(page))["audioOnly"]

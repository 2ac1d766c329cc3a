"""Screen sharing in real Chromium: a second video track, laid out large, stopped cleanly.

Chromium's fake capture devices give getDisplayMedia a 1280x720 test screen; the test ends the
share as the browser's own "Stop sharing" control does (the track ends), and through the page's
button. The practitioner may restrict sharing to practitioners, which ends a client's share.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.conftest import Browsers, RoomPage, eventually
from tests.e2e.test_browser_consultation import consultation, decodes_video_from, inbound

pytestmark = pytest.mark.timeout(150)


async def screen_frames(page: RoomPage, participant_id: str) -> int:
    return int(inbound(await page.stats(), participant_id, "screen").get("framesDecoded") or 0)


async def shows_screen_of(viewer: RoomPage, participant_id: str) -> dict[str, object]:
    """``viewer`` decodes ``participant_id``'s screen in a tile that takes the stage."""
    tile = viewer.page.locator(f'#tiles [data-screen-of="{participant_id}"]')
    await tile.wait_for(timeout=10_000)
    first = await screen_frames(viewer, participant_id)

    async def more() -> bool:
        return await screen_frames(viewer, participant_id) > first + 10

    await eventually(more, 15, f"screen frames of {participant_id}")
    assert await tile.get_attribute("data-pinned") == "true"
    assert await viewer.page.get_attribute("#tiles", "data-pinned") == "true"
    size = await tile.locator("video").evaluate("v => [v.videoWidth, v.videoHeight]")
    screen = inbound(await viewer.stats(), participant_id, "screen")
    return {"size": size, "frames": screen.get("framesDecoded")}


async def screen_gone(viewer: RoomPage, participant_id: str) -> None:
    tile = viewer.page.locator(f'#tiles [data-screen-of="{participant_id}"]')
    await tile.wait_for(state="detached", timeout=10_000)
    assert await viewer.page.get_attribute("#tiles", "data-pinned") == "false"


async def test_a_screen_share_is_seen_large_and_stops_cleanly(
    server: Server, browsers: Browsers, tmp_path: Path
) -> None:
    practitioner, client, _ = await consultation(server, browsers)
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()
    await decodes_video_from(practitioner, pid_c)
    figures: dict[str, object] = {}

    # The client shares; the practitioner sees it large, and the camera keeps coming too.
    await client.page.click("#screen-btn")
    await client.page.locator('#screen-btn[aria-pressed="true"]').wait_for(timeout=5000)
    figures["client_screen"] = await shows_screen_of(practitioner, pid_c)
    await decodes_video_from(practitioner, pid_c)  # the camera, beside the screen
    sent = [s for s in (await client.stats())["outbound"] if s["kind"] == "screen"]
    assert sent and sent[0]["framesEncoded"] > 0, sent
    e2ee = await practitioner.page.evaluate("window.fortrolig.e2ee()")
    assert e2ee["frames"]["received"][pid_c]["clear"] == 0, e2ee  # encrypted like the camera
    for page in (practitioner, client):
        await page.screenshot(tmp_path, "client-shares")

    # Stopped from the browser's own control: the share ends for both sides.
    await client.page.evaluate("window.fortrolig.endScreenShare()")
    await screen_gone(practitioner, pid_c)
    await client.page.locator('#screen-btn[aria-pressed="false"]').wait_for(timeout=5000)
    update = client.server_messages("participant_updated")
    assert not [m for m in update if m["participant"]["id"] == pid_c][-1]["participant"]["screen"]

    # The practitioner shares; the client sees it, and a phone lays it out too.
    await practitioner.page.click("#screen-btn")
    figures["practitioner_screen"] = await shows_screen_of(client, pid_p)
    await client.page.set_viewport_size({"width": 390, "height": 844})
    await client.screenshot(tmp_path, "practitioner-shares-phone")
    await client.page.set_viewport_size({"width": 1280, "height": 800})
    await practitioner.page.click("#screen-btn")  # stopped with the page's button
    await screen_gone(client, pid_p)
    (tmp_path / "figures.json").write_text(json.dumps(figures))


async def test_the_practitioner_restricts_sharing_and_a_clients_share_ends(
    server: Server, browsers: Browsers, tmp_path: Path
) -> None:
    practitioner, client, _ = await consultation(server, browsers)
    pid_c = await client.participant_id()
    await client.page.click("#screen-btn")
    await shows_screen_of(practitioner, pid_c)

    await practitioner.page.uncheck("#screen-policy")
    await screen_gone(practitioner, pid_c)
    await client.page.locator("#screen-btn").wait_for(state="hidden", timeout=5000)

    # The client's page stopped sending it (not merely hidden by the server's roster).
    frozen = await screen_frames(practitioner, pid_c)
    await asyncio.sleep(1.5)
    assert await screen_frames(practitioner, pid_c) <= frozen + 2
    policy = client.server_messages("screen_share")
    assert policy[-1]["allowed"] == "practitioners", policy
    assert "only practitioners" in (await client.page.inner_text("#chat-log"))
    await client.screenshot(tmp_path, "restricted")

    # Allowed again: the client may share once more.
    await practitioner.page.check("#screen-policy")
    await client.page.locator("#screen-btn").wait_for(state="visible", timeout=5000)
    await client.page.click("#screen-btn")
    await shows_screen_of(practitioner, pid_c)

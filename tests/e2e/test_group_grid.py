"""A group session of 8 in the grid, at desktop and phone size, end-to-end encrypted.

Eight Chromium pages on two cores is a lot of video: each page encodes one camera and decodes
seven. The fake camera here plays a small clip (160x120 at 10 fps, :func:`small_camera`), so
the pages can all send video while the test checks what a user would see: eight tiles that fit
the viewport without overlapping, each with its name, every remote camera decoding on the
practitioner's page, no control covered, and screenshots of it (kept in the test's tmp_path).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Browsers, RoomPage, eventually, launch
from tests.e2e.inprocess import InProcessNode, inprocess_node
from tests.e2e.test_browser_consultation import inbound
from tests.e2e.test_room_layout import SIZES, covered

# Alone: eight browsers take both cores.
pytestmark = [pytest.mark.timeout(300), pytest.mark.alone]
CLIENTS = ("Anna", "Ben", "Clara", "Dinesh", "Emil", "Freja", "Gustav")
W, H, FPS = 160, 120, 10


@pytest.fixture(scope="session")
def small_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160x120 10 fps clip: a bright bar sweeping over a gradient, 2 s long (looped)."""
    import numpy as np

    path = tmp_path_factory.mktemp("video") / "small.y4m"
    gradient = np.tile(np.linspace(40, 200, W, dtype=np.uint8), (H, 1))
    chroma = np.full((H // 2, W // 2), 128, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(2 * FPS):
            luma = gradient.copy()
            x = i * W // (2 * FPS)
            luma[:, x : x + 12] = 235
            f.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with inprocess_node(tmp_path) as n:
        yield n


@pytest.fixture
async def browsers(tmp_path: Path, small_camera: Path) -> AsyncIterator[Browsers]:
    async with launch(tmp_path, [f"--use-file-for-fake-video-capture={small_camera}"]) as b:
        yield b


# The seven others' tiles and the page's own (#self-tile, outside #tiles).
TILES = """() => [...document.querySelectorAll('#tiles .tile, #self-tile')].map(t => {
  const r = t.getBoundingClientRect();
  const caption = t.querySelector('.tile__caption');
  return {id: t.dataset.participantId || 'self', x: r.x, y: r.y, w: r.width, h: r.height,
          name: caption ? caption.textContent.trim() : '', visible: r.width > 0 && r.height > 0};
})"""


def overlapping(tiles: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of tiles whose boxes overlap by more than a pixel."""
    out = []
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            if dx > 1 and dy > 1:
                out.append((a["name"], b["name"]))
    return out


async def decoding(page: RoomPage, others: list[str]) -> dict[str, int]:
    stats = await page.stats()
    return {pid: int(inbound(stats, pid, "video").get("framesDecoded") or 0) for pid in others}


async def test_eight_participants_in_the_grid_at_desktop_and_phone_size(
    node: InProcessNode, browsers: Browsers, tmp_path: Path
) -> None:
    session = await node.session(max_participants=8)
    doctor = await browsers.open(session["practitioner_url"], "Dr. Ørsted")
    urls = [await node.client_url(session) for _ in CLIENTS]
    clients = list(
        await asyncio.gather(*(browsers.open(u, n) for u, n in zip(urls, CLIENTS, strict=True)))
    )
    everyone = [doctor, *clients]
    for page in everyone:
        await page.wait_state("in_session", within=60)
    pids = {page.name: await page.participant_id() for page in everyone}
    others = [pid for name, pid in pids.items() if name != doctor.name]

    # Every remote camera decodes on the practitioner's page, and the last client's page
    # decodes everyone too (a full mesh through the SFU: 8 publishers, 56 streams).
    async def all_decode(page: RoomPage, of: list[str]) -> bool:
        frames = await decoding(page, of)
        return all(n > 10 for n in frames.values())

    last = clients[-1]
    await eventually(lambda: all_decode(doctor, others), 60, "every camera on the practitioner's")
    last_others = [pid for name, pid in pids.items() if name != last.name]
    await eventually(lambda: all_decode(last, last_others), 60, "every camera on a client's")
    state = await doctor.page.evaluate("window.fortrolig.e2ee()")
    assert state["mode"] == "on", state  # the group is end-to-end encrypted too

    for page in (doctor, last):
        for size, (width, height) in SIZES.items():
            await page.page.set_viewport_size({"width": width, "height": height})

            async def laid_out(p: RoomPage = page) -> bool:
                tiles = await p.page.evaluate(TILES)
                return len(tiles) == 8 and not overlapping(tiles)

            await eventually(laid_out, 10, f"eight tiles side by side on {page.name}'s {size}")
            tiles = await page.page.evaluate(TILES)
            # Every tile shown whole inside the viewport, named.
            for t in tiles:
                assert t["visible"], (size, t)
                assert t["x"] >= -1 and t["x"] + t["w"] <= width + 1, (size, t)
                assert t["y"] >= -1 and t["y"] + t["h"] <= height + 1, (size, t)
                assert t["name"], (size, t)
            names = " ".join(t["name"] for t in tiles)
            for name in [*CLIENTS, doctor.name]:
                if name != page.name:  # the page's own tile says "You"
                    assert name in names, (size, names)
            # The keys went around without the chat being refused (the page would say "The
            # message could not be sent." for each key message the server rate-limited).
            system = await page.page.locator("#chat-log .chat__line--system").all_inner_texts()
            assert not [line for line in system if "could not be sent" in line], system
            assert not await covered(page), (page.name, size)
            print(f"{page.name} {size}: tiles {[(round(t['w']), round(t['h'])) for t in tiles]}")
            await page.screenshot(tmp_path, f"grid-8-{size}")

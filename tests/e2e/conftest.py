"""Browser fixtures: Debian's Chromium driven by Playwright, fake camera and microphone.

Each participant gets its own browser context (its own storage, like a separate person's
browser). The page's WebSocket goes through Playwright's WebSocket routing, which records every
frame the server sends the page (so tests can check what the server relayed) and keeps ICE on
127.0.0.1: candidates for other local interfaces are not forwarded to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `make test` installs Playwright (dev extra) and Debian's chromium: missing either is a broken
# setup, not a reason to skip the browser tests.
import playwright.async_api as playwright_api
import pytest

from tests.support import polling
from tests.support.impaired_net import ImpairedLink, impaired_link

CHROMIUM = os.environ.get("FORTROLIG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not shutil.which(CHROMIUM):
    raise RuntimeError(f"Chromium not found at {CHROMIUM}: run `make test` (it apt-installs it)")


@dataclass
class RoomPage:
    """One participant's page plus what its WebSocket carried."""

    page: Any
    name: str
    from_server: list[str] = field(default_factory=list)
    to_server: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    ws_urls: list[str] = field(default_factory=list)  # every signaling WebSocket it opened

    async def state(self) -> str:
        return str(await self.page.evaluate("window.fortrolig.state"))

    async def wait_state(self, state: str, within: float = 15.0) -> None:
        await self.page.wait_for_function(
            "s => window.fortrolig && window.fortrolig.state === s",
            arg=state,
            timeout=within * 1000,
            polling=100,  # requestAnimationFrame is throttled in background pages
        )

    async def stats(self) -> dict[str, Any]:
        return dict(await self.page.evaluate("window.fortrolig.stats()") or {})

    async def participant_id(self) -> str:
        return str(await self.page.evaluate("window.fortrolig.participantId"))

    def server_messages(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.from_server:
            msg = json.loads(raw)
            if msg.get("type") == kind:
                out.append(msg)
        return out

    async def screenshot(self, folder: Path, label: str) -> Path:
        path = folder / f"{label}-{self.name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


LOOPBACK = ("127.0.0.1", "::1")


def _loopback_candidate(raw: str, allowed: tuple[str, ...] = LOOPBACK) -> bool:
    """False for a `candidate` message naming an address other than 127.0.0.1 (or ::1), or
    than ``allowed`` (the addresses of a test's own network namespaces)."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return True
    if msg.get("type") != "candidate" or not msg.get("candidate"):
        return True
    fields = str(msg["candidate"]).split()
    return len(fields) > 4 and fields[4] in allowed


class Browsers:
    """Opens room pages, one browser context each; closes everything it opened."""

    def __init__(self, browser: Any, out: Path, ice_addresses: tuple[str, ...] = LOOPBACK) -> None:
        self.browser = browser
        self.out = out
        self.ice_addresses = ice_addresses
        self.contexts: list[Any] = []
        self.pages: list[RoomPage] = []

    async def open(
        self,
        url: str,
        name: str,
        join: bool = True,
        camera: str | None = "",
        microphone: str | None = "",
        viewport: tuple[int, int] = (1280, 800),
        locale: str = "en-GB",
    ) -> RoomPage:
        room = await self.new_page(name, viewport, locale)
        await room.page.goto(url)
        await self.prejoin(room, join, camera, microphone)
        return room

    async def prejoin(
        self,
        room: RoomPage,
        join: bool = True,
        camera: str | None = "",
        microphone: str | None = "",
    ) -> None:
        """On the room page: wait for the preview, choose devices, type the name, join."""
        page = room.page
        await page.wait_for_function("window.fortrolig !== undefined")
        await page.wait_for_selector("#join-btn:not([disabled])")
        if camera is None:
            await page.select_option("#camera-select", "none")
        if microphone is None:
            await page.select_option("#mic-select", "none")
        await page.fill("#name-input", room.name)
        if join:
            await page.click("#join-btn")

    async def new_page(
        self,
        name: str,
        viewport: tuple[int, int] = (1280, 800),
        locale: str = "en-GB",
        timezone: str | None = None,
        permissions: list[str] | None = None,
    ) -> RoomPage:
        """A page in its own browser context, its WebSocket recorded, not navigated yet."""
        context = await self.browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale=locale,
            timezone_id=timezone,
            permissions=permissions,
        )
        self.contexts.append(context)
        return await self._page_in(context, name)

    async def new_tab(self, beside: RoomPage, name: str) -> RoomPage:
        """Another tab of the same browser (context) as ``beside``: it shares cookies, not
        sessionStorage, as a tab the user opens does."""
        return await self._page_in(beside.page.context, name)

    async def _page_in(self, context: Any, name: str) -> RoomPage:
        page = await context.new_page()
        room = RoomPage(page, name)
        page.on("console", lambda m: room.console.append(f"{m.type}: {m.text}"))

        async def route(ws: Any) -> None:
            room.ws_urls.append(str(ws.url))
            server = ws.connect_to_server()

            def from_page(message: str | bytes) -> None:
                text = message if isinstance(message, str) else message.decode()
                room.to_server.append(text)
                if _loopback_candidate(text, self.ice_addresses):
                    server.send(message)

            def from_server(message: str | bytes) -> None:
                room.from_server.append(message if isinstance(message, str) else message.decode())
                ws.send(message)

            ws.on_message(from_page)
            server.on_message(from_server)

        await page.route_web_socket("**/ws", route)
        self.pages.append(room)
        return room

    async def close(self) -> None:
        for room in self.pages:  # kept with the screenshots, for a failing test's story
            (self.out / f"console-{room.name}.txt").write_text("\n".join(room.console))
            (self.out / f"ws-{room.name}.txt").write_text(
                "\n".join(m[:400] for m in room.from_server)
            )
        for context in self.contexts:
            with contextlib.suppress(Exception):
                await context.close()
        self.contexts.clear()


def _pids_with_marker(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@contextlib.asynccontextmanager
async def launch(
    out: Path,
    extra_args: list[str] | None = None,
    without: tuple[str, ...] = (),
    executable: str | Path = CHROMIUM,
    ice_addresses: tuple[str, ...] = LOOPBACK,
) -> AsyncIterator[Browsers]:
    """A fresh Chromium; every Chromium process of it is gone when the block ends. ``without``
    drops default switches (e.g. the fake permission UI, to let a page be refused);
    ``executable`` may be a wrapper that runs Chromium in a test's network namespace, whose
    addresses ``ice_addresses`` then lets through as ICE candidates."""
    # A switch Chromium ignores, so that leftovers of this launch can be found by PID.
    marker = f"--fortrolig-e2e-run={uuid.uuid4().hex}"
    args = [*(a for a in CHROMIUM_ARGS if a not in without), *(extra_args or []), marker]
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(executable), args=args, headless=True
        )
        # Kept beside the screenshots and in every report of the test (see _name_the_browser).
        (out / "browser-version.txt").write_text(f"Chromium {browser.version}\n")
        holder = Browsers(browser, out, ice_addresses)
        try:
            yield holder
        finally:
            await holder.close()
            await browser.close()
    deadline = time.monotonic() + 5
    while (pids := _pids_with_marker(marker)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # Chromium exits on its own after close(); give it a moment
    for pid in pids:  # only processes launched with this test's marker
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _name_the_browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[None]:
    """A failing e2e test's report names the browser build it ran on."""
    yield
    version = tmp_path / "browser-version.txt"
    if version.exists():
        request.node.add_report_section("teardown", "browser", version.read_text())


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[Browsers]:
    """Chromium with its built-in fake camera (a simple animation) and microphone (a beep)."""
    async with launch(tmp_path) as holder:
        yield holder


@pytest.fixture(scope="session")
def busy_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x480 30 fps clip of moving fine texture, which needs more than 500 kbit/s in VP8.

    Chromium's own fake camera is so simple that its VP8 encoder stays near 480 kbit/s whatever
    the bandwidth estimate allows; a clip with detail shows the estimate itself.
    """
    import numpy as np

    path = tmp_path_factory.mktemp("video") / "busy.y4m"
    rng = np.random.default_rng(7)
    texture = rng.integers(16, 235, size=(480 * 2, 640 * 2), dtype=np.uint8)
    chroma = np.full((240, 320), 128, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for i in range(60):
            y, x = (i * 7) % 480, (i * 11) % 640
            f.write(b"FRAME\n" + texture[y : y + 480, x : x + 640].tobytes() + chroma + chroma)
    return path


@pytest.fixture
async def busy_browsers(tmp_path: Path, busy_video: Path) -> AsyncIterator[Browsers]:
    """Chromium whose fake camera plays :func:`busy_video`."""
    async with launch(tmp_path, [f"--use-file-for-fake-video-capture={busy_video}"]) as holder:
        yield holder


async def eventually(
    check: Callable[[], Awaitable[bool]], limit: float, what: str = "", step: float = 0.25
) -> float:
    """:func:`tests.support.polling.eventually` at a pace a browser round trip can afford."""
    return await polling.eventually(check, limit, what, step)


@pytest.fixture
def link(tmp_path: Path) -> Iterator[ImpairedLink]:
    """Three network namespaces joined by an (unimpaired until told) link; this thread in the
    server's (tests/support/impaired_net.py)."""
    with impaired_link(tmp_path) as made:
        yield made

"""Firefox (Debian's firefox-esr over WebDriver BiDi, tests/e2e/firefox.py) in a consultation:
with Chromium, with another Firefox, and a Firefox that cannot encrypt end to end.

The node runs in the test's event loop (tests/e2e/inprocess.py) so that the test can ask the SFU
which SRTP profile each participant's DTLS handshake selected and take the frames it forwards.
Each test writes screenshots of its pages, the pages' console logs and a figures.json (what the
browsers' getStats said of the transport) into its tmp_path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fortrolig.media.aiortc_hooks import AES_256_GCM as SFU_AES_256_GCM  # OpenSSL's name
from tests.e2e.conftest import Browsers, RoomPage, eventually
from tests.e2e.firefox import Firefox, FirefoxPage, launch_firefox
from tests.e2e.inprocess import Capture, InProcessNode, inprocess_node
from tests.e2e.test_browser_consultation import decodes_video_from, inbound, receives_audio_from
from tests.e2e.test_e2ee_browser import decodable, from_keyframe
from tests.support.webrtc_stats import AES_256_GCM, srtp_profile

pytestmark = pytest.mark.timeout(180)

Page = RoomPage | FirefoxPage


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with inprocess_node(tmp_path) as n:
        yield n


@pytest.fixture
async def firefox(tmp_path: Path) -> AsyncIterator[Firefox]:
    async with launch_firefox(tmp_path) as ff:
        yield ff


async def js(page: Page, expression: str) -> Any:
    if isinstance(page, FirefoxPage):
        return await page.evaluate(expression)
    return await page.page.evaluate(expression)


async def badge(page: Page) -> str:
    return str(await js(page, "document.querySelector('#e2ee-badge').dataset.state"))


async def consultation(
    node: InProcessNode, open_practitioner: Any, open_client: Any
) -> tuple[dict[str, Any], Capture, Page, Page]:
    session = await node.session()
    capture = Capture()
    node.sfu.attach_subscriber(session["room_id"], capture)
    practitioner = await open_practitioner(session["practitioner_url"])
    client = await open_client(session["client_url"])
    await practitioner.wait_state("in_session", 30)
    await client.wait_state("in_session", 30)
    return session, capture, practitioner, client


async def see_and_hear_each_other(
    node: InProcessNode, session: dict[str, Any], capture: Capture, a: Page, b: Page
) -> dict[str, Any]:
    """Both decode the other's video and hear their audio, over AES-256-GCM SRTP, end-to-end
    encrypted; returns what each page's getStats said of its transport."""
    pid_a, pid_b = await a.participant_id(), await b.participant_id()
    figures: dict[str, Any] = {
        "fps": {
            a.name: await decodes_video_from(a, pid_b, 20),
            b.name: await decodes_video_from(b, pid_a, 20),
        }
    }
    await receives_audio_from(a, pid_b)
    await receives_audio_from(b, pid_a)
    for page, other in ((a, pid_b), (b, pid_a)):
        stats = await page.stats()
        video = inbound(stats, other, "video")
        assert (video.get("frameWidth") or 0) > 0 and (video.get("frameHeight") or 0) > 0, video
        # What the browser says it negotiated, where its getStats tells (Chromium does; a
        # Firefox without RTCTransportStats would not, and the SFU's word below stands).
        transport = stats.get("transport") or {}
        if isinstance(page, RoomPage) or transport.get("srtpCipher"):
            assert srtp_profile(transport.get("srtpCipher")) == AES_256_GCM, transport
        figures[f"transport_{page.name}"] = transport
        figures[f"selected_{page.name}"] = stats.get("selected")
        # What the SFU's own DTLS handshake with this participant selected.
        pid = await page.participant_id()
        assert await node.sfu.srtp_profile(session["room_id"], pid) == SFU_AES_256_GCM
        # End-to-end encrypted both ways: every frame sealed, the other's opened.
        state = dict(await js(page, "window.fortrolig.e2ee()") or {})
        assert state["api"] in ("script", "streams") and state["mode"] == "on", state
        frames = state["frames"]
        assert frames["encrypted"] > 100 and frames["sentClear"] == 0, state
        assert frames["received"][other]["decrypted"] > 100, state
        assert frames["received"][other]["clear"] == 0, state
        assert await badge(page) == "on"
        figures[f"e2ee_{page.name}"] = {"api": state["api"], "frames": frames}
    # The safety codes (which cover the media keys) match across the two browsers.
    codes_a = await js(a, "window.fortrolig.safetyCodes()")
    codes_b = await js(b, "window.fortrolig.safetyCodes()")
    assert codes_a[pid_b] == codes_b[pid_a]
    # Inside the server, a's picture is ciphertext that b's keys open.
    video = capture.vp8_frames(pid_a)
    assert len(from_keyframe(video)) > 10 and decodable(from_keyframe(video)[:60]) == 0
    last = video[-1]  # sent under a's current key, which b holds
    args = json.dumps([pid_a, base64.b64encode(last.data).decode(), "video", last.keyframe])
    assert await js(b, f"window.fortrolig.tryOpen(...{args})"), "b's keys open a's frame"
    return figures


async def test_firefox_and_chromium_see_and_hear_each_other_end_to_end_encrypted(
    node: InProcessNode, browsers: Browsers, firefox: Firefox, tmp_path: Path
) -> None:
    session, capture, practitioner, client = await consultation(
        node,
        lambda url: firefox.open(url, "Dr. Ørsted"),
        lambda url: browsers.open(url, "Klient"),
    )
    figures = await see_and_hear_each_other(node, session, capture, practitioner, client)
    figures["firefox"] = firefox.driver.version
    assert firefox.off_host() == []
    for page in (practitioner, client):
        await page.screenshot(tmp_path, "media")
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))


async def test_two_firefox_pages_see_and_hear_each_other_end_to_end_encrypted(
    node: InProcessNode, firefox: Firefox, tmp_path: Path
) -> None:
    session, capture, practitioner, client = await consultation(
        node,
        lambda url: firefox.open(url, "Dr. Ørsted"),
        lambda url: firefox.open(url, "Klient"),
    )
    figures = await see_and_hear_each_other(node, session, capture, practitioner, client)
    figures["firefox"] = firefox.driver.version
    assert firefox.off_host() == []
    for page in (practitioner, client):
        await page.screenshot(tmp_path, "media")
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))


# A Firefox whose media encryption worker does not start (as under a policy it enforces and
# another browser does not): every worker the page makes loads a script that is not there.
NO_WORKER = """
(() => {
  const Real = window.Worker;
  window.Worker = function (url, options) {
    return new Real("/static/js/no-such-worker.js", options);
  };
})();
"""


async def test_firefox_that_cannot_encrypt_is_told_before_joining(
    node: InProcessNode, browsers: Browsers, firefox: Firefox, tmp_path: Path
) -> None:
    session = await node.session()
    practitioner = await browsers.open(session["practitioner_url"], "Dr. Ørsted")
    client = await firefox.new_page("Klient")
    await client.preload(NO_WORKER)
    await client.goto(session["client_url"])
    await client.prejoin(join=False)
    # Told before joining, plainly, and joining does not wait on the worker.
    await client.wait_for("document.querySelector('#e2ee-unsupported').checkVisibility()")
    assert "cannot encrypt the call end to end" in await client.text("#e2ee-unsupported")
    await client.screenshot(tmp_path, "prejoin-unsupported")
    await client.click("#join-btn")
    await client.wait_state("in_session", 30)
    await practitioner.wait_state("in_session")
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()
    assert (await client.evaluate("window.fortrolig.e2ee()"))["mode"] == "off"

    # The practitioner is told and decides; going on, both see each other without it.
    notice = practitioner.page.locator("#e2ee-notice")
    await notice.wait_for(state="visible", timeout=15_000)
    assert "Klient" in await notice.inner_text()
    await practitioner.page.click("#e2ee-continue")
    await decodes_video_from(practitioner, pid_c, 20)
    await decodes_video_from(client, pid_p, 20)
    for page in (practitioner, client):
        await eventually(lambda p=page: _badge_is(p, "off"), 10, "badge says off")
        await page.screenshot(tmp_path, "continued")
    assert await node.sfu.srtp_profile(session["room_id"], pid_c) == SFU_AES_256_GCM
    assert firefox.off_host() == []


async def _badge_is(page: Page, state: str) -> bool:
    return await badge(page) == state

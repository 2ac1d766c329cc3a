"""Firefox (Debian's firefox-esr over WebDriver BiDi, tests/e2e/firefox.py) in a consultation:
with Chromium, with another Firefox, and a Firefox that cannot encrypt end to end.

Firefox offers every interface's address as an ICE host candidate and never loopback, so it
runs in a network namespace of the test's own (tests/support/impaired_net.py, with the link
left unimpaired): its only address is 198.18.0.2, the node and Chromium are on 198.18.0.1 in
the namespace beside it, and nothing can leave the two. The node offers only AES-256-GCM SRTP
(the media hooks refuse any other profile), so a call that carries media was negotiated with it;
Firefox's getStats names the profile too, and that is checked where it does. Each test writes
screenshots, the pages' console logs and a figures.json into its tmp_path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, stop_server
from tests.e2e.conftest import Browsers, RoomPage, eventually, launch
from tests.e2e.firefox import Firefox, FirefoxPage, launch_firefox
from tests.e2e.lab import secure, start_lab_node
from tests.e2e.test_browser_consultation import decodes_video_from, inbound, receives_audio_from
from tests.support.impaired_net import CLIENT_ADDR, SERVER_ADDR, ImpairedLink
from tests.support.webrtc_stats import AES_256_GCM, srtp_profile

pytestmark = pytest.mark.timeout(240)

Page = RoomPage | FirefoxPage


@pytest.fixture
def node(link: ImpairedLink, tmp_path: Path) -> Iterator[Server]:
    server = start_lab_node(tmp_path)
    yield server
    stop_server(server)


@pytest.fixture
async def browsers(node: Server, tmp_path: Path) -> AsyncIterator[Browsers]:
    """Chromium beside the node (the test's thread is in the node's namespace)."""
    (tmp_path / "chromium").mkdir()
    async with launch(tmp_path / "chromium", secure(node), ice_addresses=(SERVER_ADDR,)) as h:
        yield h


@pytest.fixture
async def firefox(link: ImpairedLink, node: Server, tmp_path: Path) -> AsyncIterator[Firefox]:
    """Firefox on the other side of the (unimpaired) link, in the client's namespace."""
    (tmp_path / "firefox").mkdir()
    async with launch_firefox(
        tmp_path / "firefox",
        namespace=link.names["client"],
        origins=(node.base_url,),
        allowed=(SERVER_ADDR, CLIENT_ADDR),
    ) as ff:
        yield ff


async def js(page: Page, expression: str) -> Any:
    if isinstance(page, FirefoxPage):
        return await page.evaluate(expression)
    return await page.page.evaluate(expression)


async def badge(page: Page) -> str:
    return str(await js(page, "document.querySelector('#e2ee-badge').dataset.state"))


async def consultation(
    node: Server, open_practitioner: Any, open_client: Any
) -> tuple[dict[str, Any], Page, Page]:
    session = node.session()
    practitioner = await open_practitioner(session["practitioner_url"])
    client = await open_client(session["client_url"])
    await practitioner.wait_state("in_session", 30)
    await client.wait_state("in_session", 30)
    return session, practitioner, client


async def see_and_hear_each_other(firefox: Firefox, a: Page, b: Page, out: Path) -> None:
    """Both decode the other's video and hear their audio, end-to-end encrypted, and no socket
    of Firefox leaves the namespaces; screenshots and what each page's getStats said of its
    transport (figures.json) go into ``out``."""
    pid_a, pid_b = await a.participant_id(), await b.participant_id()
    figures: dict[str, Any] = {
        "fps": {
            a.name: await decodes_video_from(a, pid_b, 30),
            b.name: await decodes_video_from(b, pid_a, 30),
        }
    }
    await receives_audio_from(a, pid_b)
    await receives_audio_from(b, pid_a)
    for page, other in ((a, pid_b), (b, pid_a)):
        stats = await page.stats()
        video = inbound(stats, other, "video")
        assert (video.get("frameWidth") or 0) > 0 and (video.get("frameHeight") or 0) > 0, video
        # What the browser says it negotiated, where its getStats tells (Chromium does).
        transport = stats.get("transport") or {}
        if isinstance(page, RoomPage) or transport.get("srtpCipher"):
            assert srtp_profile(transport.get("srtpCipher")) == AES_256_GCM, transport
        figures[f"transport_{page.name}"] = transport
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
    assert firefox.off_host() == []
    figures["firefox"] = firefox.driver.version
    for page in (a, b):
        await page.screenshot(out, "media")
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures["fps"]))


async def test_firefox_and_chromium_see_and_hear_each_other_end_to_end_encrypted(
    node: Server, browsers: Browsers, firefox: Firefox, tmp_path: Path
) -> None:
    _, practitioner, client = await consultation(
        node,
        lambda url: browsers.open(url, "Dr. Ørsted"),
        lambda url: firefox.open(url, "Klient"),
    )
    await see_and_hear_each_other(firefox, practitioner, client, tmp_path)


async def test_two_firefox_pages_see_and_hear_each_other_end_to_end_encrypted(
    node: Server, firefox: Firefox, tmp_path: Path
) -> None:
    _, practitioner, client = await consultation(
        node,
        lambda url: firefox.open(url, "Dr. Ørsted"),
        lambda url: firefox.open(url, "Klient"),
    )
    await see_and_hear_each_other(firefox, practitioner, client, tmp_path)


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
    node: Server, browsers: Browsers, firefox: Firefox, tmp_path: Path
) -> None:
    session = node.session()
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
    await decodes_video_from(practitioner, pid_c, 30)
    await decodes_video_from(client, pid_p, 30)
    for page in (practitioner, client):
        await eventually(lambda p=page: _badge_is(p, "off"), 10, "badge says off")
        await page.screenshot(tmp_path, "continued")
    assert firefox.off_host() == []


async def _badge_is(page: Page, state: str) -> bool:
    return await badge(page) == state

"""Every control of the room page can be clicked, at desktop and phone size, in both languages.

A control is clickable when ``document.elementFromPoint`` at its centre (after scrolling it into
view, as a user would) is the control itself or something inside it: nothing else (the notes
card, the control bar, a panel) lies over it. Checked for the practitioner (signed in, so the
notes panel is there) and the client, with the chat open on a phone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.e2e.axe_check import assert_accessible
from tests.e2e.conftest import Browsers, RoomPage, launch
from tests.e2e.test_browser_consultation import decodes_video_from, receives_audio_from
from tests.e2e.test_recording_browser import signed_in

pytestmark = pytest.mark.timeout(120)
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}

# Visible controls whose centre is covered by something else: [{id, text, hit}].
COVERED = """
(root) => {
  const controls = [...document.querySelectorAll(
    `${root} button, ${root} input, ${root} select, ${root} textarea, ${root} a[href]`)];
  const covered = [];
  for (const el of controls) {
    if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    if (el.closest("[hidden]") || el.type === "hidden") continue;
    if (el.classList.contains("skip-link")) continue; // on screen only while focused
    el.scrollIntoView({ block: "center", inline: "center" });
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const label = hit?.closest("label");
    const ok = hit && (el === hit || el.contains(hit) || (label && label.contains(el)));
    if (!ok) {
      const who = hit ? `${hit.tagName}#${hit.id}.${hit.className}` : "nothing";
      const text = el.textContent.trim().slice(0, 40);
      covered.push({ id: el.id || el.className, text, hit: who });
    }
  }
  return covered;
}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("layout-node"))
    yield srv
    stop_server(srv)


async def covered(room: RoomPage, root: str = "body") -> list[dict[str, Any]]:
    return list(await room.page.evaluate(COVERED, root))


async def check_every_size(room: RoomPage, tmp_path: Path) -> dict[str, list[Any]]:
    """Each size and language: what is covered (with the chat open on a phone)."""
    problems: dict[str, list[Any]] = {}
    for size, (width, height) in SIZES.items():
        await room.page.set_viewport_size({"width": width, "height": height})
        for lang in ("en", "da"):
            if await room.page.evaluate("document.documentElement.lang") != lang:
                await room.page.click("#lang-btn")
            label = f"{room.name}-{size}-{lang}"
            found = await covered(room)
            await room.screenshot(tmp_path, f"{size}-{lang}")
            await assert_accessible(room.page, label)
            if size == "phone":
                # Opened by script: a covered chat button is reported above, not a time-out.
                await room.page.evaluate("document.getElementById('chat-btn').click()")
                await room.page.wait_for_selector("#chat-input:visible")
                # The open chat is a sheet over the page: what it must not hide is itself and
                # the control bar (the page behind it is out of reach on purpose).
                for root in ("#side-panel", ".controls"):
                    found += [dict(x, chat="open") for x in await covered(room, root)]
                await assert_accessible(room.page, f"{label} chat open")
                await room.screenshot(tmp_path, f"{size}-{lang}-chat")
                await room.page.evaluate("document.getElementById('chat-btn').click()")
            if found:
                problems[label] = found
    return problems


async def signed_in_consultation(node: Server, browsers: Browsers) -> tuple[RoomPage, RoomPage]:
    """A practitioner (logged in, so the notes panel is there) and a client, both in session."""
    session = node.session()
    doctor = await browsers.new_page("practitioner")
    await doctor.page.context.add_init_script(signed_in(session["access_token"]))
    await doctor.page.goto(session["practitioner_url"])
    await browsers.prejoin(doctor)
    client = await browsers.new_page("client")
    await client.page.goto(session["client_url"])
    await browsers.prejoin(client)
    for room in (doctor, client):
        await room.wait_state("in_session")
    return doctor, client


async def test_every_room_control_is_clickable_at_desktop_and_phone_size(
    node: Server, browsers: Browsers, tmp_path: Path
) -> None:
    doctor, client = await signed_in_consultation(node, browsers)
    await doctor.page.wait_for_selector("#notes-panel:visible")
    # A few chat lines, so the log takes its room.
    for i in range(6):
        await doctor.page.fill("#chat-input", f"Linje {i}: hvordan har ugen været?")
        await doctor.page.click("#chat-send")
    await client.page.wait_for_function(
        "() => document.querySelectorAll('#chat-log li').length >= 6", polling=100
    )
    problems = {}
    for room in (doctor, client):
        problems.update(await check_every_size(room, tmp_path))
    (tmp_path / "covered.json").write_text(json.dumps(problems, indent=1, ensure_ascii=False))
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)


def _luminance(rgb: str) -> float:
    r, g, b = (int(x) / 255 for x in rgb.strip("rgba() ").split(",")[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def tab_to(page: Any, element_id: str, limit: int = 80) -> None:
    """Press Tab until ``element_id`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if await page.evaluate("document.activeElement?.id") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


async def test_chat_and_notes_by_keyboard_with_a_visible_focus_ring(
    node: Server, browsers: Browsers, tmp_path: Path
) -> None:
    doctor, client = await signed_in_consultation(node, browsers)
    page = doctor.page
    await page.wait_for_selector("#notes-panel:visible")

    # The focus ring: at least 3:1 against what is around the control (WCAG 2.4.11/1.4.11).
    await tab_to(page, "mic-btn")
    ring = await page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
                   return [s.outlineColor, s.outlineStyle, parseFloat(s.outlineWidth)]; }"""
    )
    behind = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert ring[1] == "solid" and ring[2] >= 2, ring
    assert contrast(ring[0], behind) >= 3, (ring, behind)
    await doctor.screenshot(tmp_path, "focus-ring")

    # Chat: Tab to the message box, type, Enter sends; the client reads it.
    await tab_to(page, "chat-input")
    await page.keyboard.type("Skal vi begynde?")
    await page.keyboard.press("Enter")
    await client.page.locator("#chat-log li", has_text="Skal vi begynde?").wait_for()

    # Notes: a new client's journal and a note, with the keyboard only.
    await tab_to(page, "notes-new-name")
    await page.keyboard.type("Bo Nielsen")
    await page.keyboard.press("Tab")  # to Create client
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notes-form:visible")
    await tab_to(page, "notes-text")
    await page.keyboard.type("Tastatur: første notat.")
    await page.keyboard.press("Tab")  # to Save note
    await page.keyboard.press("Enter")
    await page.locator("#notes-list > li", has_text="Tastatur: første notat.").wait_for()


async def test_a_blocked_camera_is_shown_as_blocked_and_recovers_when_allowed(
    node: Server, tmp_path: Path
) -> None:
    """Chromium without the fake permission UI: the client's page is refused camera and
    microphone (headless Chromium dismisses the prompt), joins anyway, the practitioner sees
    "blocked", not "off"; the client then allows both in the browser (a real permission change,
    through the DevTools protocol) and is seen and heard without a reload."""
    session = node.session()
    async with launch(tmp_path, without=("--use-fake-ui-for-media-stream",)) as browsers:
        doctor = await browsers.new_page("practitioner", permissions=["camera", "microphone"])
        await doctor.page.goto(session["practitioner_url"])
        await browsers.prejoin(doctor)
        client = await browsers.new_page("client", viewport=(390, 844))
        await client.page.goto(session["client_url"])
        await client.page.wait_for_selector("#prejoin-msg[data-i18n='prejoin.denied']")
        await client.screenshot(tmp_path, "refused")
        await browsers.prejoin(client)
        for room in (doctor, client):
            await room.wait_state("in_session")
        cid = await client.participant_id()
        tile = doctor.page.locator(f".tile[data-participant-id='{cid}']")
        await doctor.page.wait_for_selector(
            f".tile[data-participant-id='{cid}'][data-video-blocked=true][data-audio-blocked=true]"
        )
        assert "Camera blocked" in await tile.inner_text()
        await doctor.screenshot(tmp_path, "sees-blocked")

        await client.page.context.grant_permissions(["camera", "microphone"], origin=node.base_url)
        await doctor.page.wait_for_selector(
            f".tile[data-participant-id='{cid}'][data-video=true][data-video-blocked=false]",
            timeout=20_000,
        )
        await decodes_video_from(doctor, cid)
        await receives_audio_from(doctor, cid)
        assert "blocked" not in await tile.inner_text()
        await doctor.screenshot(tmp_path, "sees-recovered")

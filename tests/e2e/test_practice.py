"""The practitioner in real Chromium: /login with a TOTP code, /practice, the room's notes panel.

The account is made through the HTTP API (sign-up, TOTP enrolment, confirmation with a code the
test computes from the enrolment secret); everything after that happens in the browser: log in,
create a consultation, open the practitioner's room link, write a note and an addendum in the
notes panel and export the journal as JSON (a real download, fetched with the Bearer header).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fortrolig.accounts.totp import totp
from tests.conftest import Server, start_server, stop_server
from tests.e2e.axe_check import assert_accessible
from tests.e2e.conftest import Browsers
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(90)
EMAIL = "mette.hansen@klinik.dk"
PASSWORD = "blå heste løber over broen"
CLIENT_EMAIL = "anna@example.eu"
# The page's own session module (same URL, so the same module instance as the page's).
REFRESH = "async () => (await import('/static/js/session.js')).refresh()"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("practice-node"), mailbox.env)
    yield srv
    stop_server(srv)


def post(node: Server, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        node.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(json.loads(resp.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read() or b"{}"))


def enrolled_account(node: Server, mailbox: Mailbox) -> bytes:
    """Sign up, confirm the e-mail by its link, enrol and confirm TOTP; the secret (the
    confirmation spent the previous step)."""
    status, _ = post(
        node, "/auth/signup", {"email": EMAIL, "display_name": "Mette", "password": PASSWORD}
    )
    assert status == 201
    deadline = time.monotonic() + 10
    while not mailbox.to(EMAIL):
        assert time.monotonic() < deadline, "no confirmation mail"
        time.sleep(0.05)
    token = mailbox.to(EMAIL)[0].body.split("/confirm#", 1)[1].split()[0]
    status, _ = post(node, "/auth/email/confirm", {"token": token})
    assert status == 200
    status, enrolment = post(node, "/auth/totp/enrol", {"email": EMAIL, "password": PASSWORD})
    assert status == 200, enrolment
    b32 = enrolment["secret"]
    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    # The previous step's code (accepted: one step either side), so that the current step is
    # still unspent for the login in the browser.
    while time.time() % 30 > 26:  # not at a step's end: the server must see the same step
        time.sleep(0.2)
    code = totp(secret, time.time() - 30)
    status, body = post(
        node, "/auth/totp/confirm", {"email": EMAIL, "password": PASSWORD, "totp": code}
    )
    assert status == 200 and body["state"] == "active", body
    return secret


async def test_login_practice_room_notes_and_export(
    node: Server, mailbox: Mailbox, browsers: Browsers, tmp_path: Path
) -> None:
    secret = enrolled_account(node, mailbox)
    me = await browsers.new_page("practitioner")
    page = me.page

    # -- /login: a wrong code is refused with the typed message, the right one logs in.
    await page.goto(node.base_url + "/login")
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("6-digit code").fill(
        "000000" if totp(secret, time.time()) != "000000" else "111111"
    )
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => window.fortroligLogin.lastError === 'invalid_credentials'")
    assert "not correct" in await page.inner_text("#login-msg")
    await me.screenshot(tmp_path, "login")
    await assert_accessible(page, "login with an error")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("6-digit code").fill(totp(secret, time.time()))
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/practice")
    # The tab keeps only its access token; the refresh token is an HttpOnly cookie that no
    # script can read, scoped to /auth.
    stored = json.loads(await page.evaluate("sessionStorage.getItem('fortrolig.session')"))
    assert stored["access_token"] and "refresh_token" not in stored
    assert "token" not in page.url and await page.evaluate("localStorage.length <= 1")
    assert "frt_" not in await page.evaluate("document.cookie")
    cookie = await refresh_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/auth"

    # -- /practice: the tokens rotate (as the page does before the access token expires).
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    assert await page.evaluate(REFRESH)
    assert (await refresh_cookie(page))["value"] != cookie["value"]

    # -- a consultation with an e-mail code, its invite and the room link.
    await page.get_by_label("Client's name", exact=True).fill("Anna Jensen")
    await page.get_by_label("Client's e-mail", exact=True).fill(CLIENT_EMAIL)
    await page.get_by_role("button", name="Create consultation").click()
    await page.wait_for_selector("#made:visible")
    invite = await page.input_value("#invite-link")
    assert invite.startswith(node.base_url + "/invite#")
    await page.wait_for_selector("#room-link[href*='/room/']")
    # The practitioner's way in has no token: the room page asks for one when it joins.
    room_href = await page.get_attribute("#room-link", "href") or ""
    assert room_href.endswith("#role=practitioner") and "token" not in room_href
    consultation_id = (await page.inner_text("#made-who")).split("·")[-1].strip()
    assert consultation_id.startswith("con_")
    await me.screenshot(tmp_path, "practice")

    # -- the room as practitioner: the notes panel belongs to this consultation.
    await page.click("#room-link")
    await page.wait_for_url("**/room/**")
    await browsers.prejoin(me)
    await me.wait_state("alone")
    assert "token" not in page.url
    await page.wait_for_selector("#notes-panel:visible")
    assert consultation_id in await page.inner_text("#notes-linked")
    # The consultation belongs to Anna's journal (made with it): the panel opens that journal.
    await page.wait_for_selector("#notes-form:visible")
    assert "Anna Jensen" in await page.locator("#notes-client option:checked").inner_text()
    await page.get_by_label("New note").fill("Første samtale: søvn og uro.")
    await page.get_by_role("button", name="Save note").click()
    note = page.locator("#notes-list > li", has_text="Første samtale")
    await note.wait_for()
    await note.get_by_role("button", name="Add addendum").click()
    await page.keyboard.type("Tillæg: medicin nævnt.")
    await note.get_by_role("button", name="Save addendum").click()
    await note.locator(".notes__entry--addendum", has_text="Tillæg").wait_for()
    await me.screenshot(tmp_path, "room-notes")

    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export JSON").click()
    download = await info.value
    target = tmp_path / "export.json"
    await download.save_as(target)
    exported = json.loads(target.read_text())
    assert exported["format"] == "fortrolig.journal"
    assert exported["client"]["name"] == "Anna Jensen"
    assert exported["client"]["contact"] == CLIENT_EMAIL
    first, addendum = exported["notes"]
    assert first["text"] == "Første samtale: søvn og uro."
    assert first["consultation_id"] == consultation_id and first["corrects"] is None
    assert addendum["text"] == "Tillæg: medicin nævnt." and addendum["corrects"] == first["id"]

    # -- after leaving, the journal is still there.
    await page.click("#leave-btn")
    await me.wait_state("ended")
    await page.wait_for_selector("#ended #notes-panel:visible")
    await me.screenshot(tmp_path, "ended-notes")
    await assert_accessible(page, "room ended")

    # -- and on /practice (in Danish): the client's journal with both entries.
    await page.goto(node.base_url + "/practice")
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    await page.get_by_role("button", name="Dansk").click()
    assert await page.inner_text("#clients-heading") == "Journalklienter"
    await page.get_by_role("button", name="Åbn journal: Anna Jensen").click()
    await page.locator("#notes-list .notes__entry--addendum", has_text="Tillæg").wait_for()
    await me.screenshot(tmp_path, "practice-journal")

    # -- another tab of the same browser is logged in too (the cookie), and sends a new invite:
    # the first link stops working, the new one works.
    tab = await browsers.new_tab(me, "practitioner-tab2")
    await tab.page.goto(node.base_url + "/practice")
    await tab.page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    assert tab.page.url.endswith("/practice")
    assert await tab.page.inner_text("#status") == EMAIL
    await tab.page.goto(node.base_url + room_href)  # the room opens here too, ready to join
    await tab.page.wait_for_selector("#join-btn:not([disabled])")
    assert await tab.page.locator("#prejoin-signin").is_hidden()
    await tab.page.goto(node.base_url + "/practice")
    await tab.page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    await me.screenshot(tmp_path, "practice-second-tab")
    await assert_accessible(tab.page, "practice, second tab")

    status, _ = post(node, "/api/v1/invite/redeem", {"invite": invite.split("#", 1)[1]})
    assert status == 200  # a reusable link: it works again (a new code is sent)
    await page.click("#lang-btn")  # back to English
    await page.get_by_role("button", name=re.compile("^Send a new invite: Anna Jensen")).click()
    await page.wait_for_function(
        "old => ![old, ''].includes(document.getElementById('invite-link').value)",
        arg=invite,
        polling=100,
    )
    renewed = await page.input_value("#invite-link")
    assert renewed.startswith(node.base_url + "/invite#") and renewed != invite
    assert "earlier link no longer works" in await page.inner_text("#invite-info")
    status, body = post(node, "/api/v1/invite/redeem", {"invite": invite.split("#", 1)[1]})
    assert (status, body["error"]["code"]) == (410, "invite_revoked")
    deadline = time.monotonic() + 10  # e-mailed to the client's address
    while not any(renewed.split("#", 1)[1] in m.body for m in mailbox.to(CLIENT_EMAIL)):
        assert time.monotonic() < deadline, [m.subject for m in mailbox.to(CLIENT_EMAIL)]
        await asyncio.sleep(0.05)

    # -- logging out in one tab logs out every tab of the browser.
    await tab.page.click("#logout-btn")
    await tab.page.wait_for_url("**/login")
    await page.wait_for_url("**/login")
    assert await page.evaluate("sessionStorage.getItem('fortrolig.session')") is None
    assert await refresh_cookie(page) is None
    await page.goto(node.base_url + "/practice")
    await page.wait_for_url("**/login")
    # Signed out, the practitioner's room link asks for a login that comes back to the room.
    await page.goto(node.base_url + room_href)
    await page.wait_for_selector("#prejoin-signin:visible")
    href = await page.get_attribute("#prejoin-signin", "href") or ""
    assert href == "/login?next=" + urllib.parse.quote(room_href.split("#")[0], safe="")
    assert await page.is_hidden("#join-btn")
    await me.screenshot(tmp_path, "room-signed-out")
    await assert_accessible(page, "room, signed out")


async def refresh_cookie(page: Any) -> Any:
    """The browser's refresh cookie (as the browser stores it), or None."""
    cookies = [c for c in await page.context.cookies() if c["name"] == "fortrolig-refresh"]
    return cookies[0] if cookies else None


async def test_login_throttled_shows_retry_after(
    node: Server, browsers: Browsers, tmp_path: Path
) -> None:
    """Wrong codes for one address: after a few, the page says when to try again."""
    me = await browsers.new_page("guesser", locale="da-DK")
    page = me.page
    await page.goto(node.base_url + "/login")
    assert await page.inner_text("#login-heading") == "Log ind som behandler"
    await page.get_by_label("E-mail").fill("ukendt@klinik.dk")
    for _ in range(12):
        await page.get_by_label("Adgangskode").fill(PASSWORD)
        await page.get_by_label("6-cifret kode").fill("123456")
        await page.get_by_label("6-cifret kode").press("Enter")
        await page.wait_for_function("() => window.fortroligLogin.lastError !== null")
        if await page.evaluate("window.fortroligLogin.lastError") == "login_throttled":
            break
        await page.evaluate("window.fortroligLogin.lastError = null")
    message = await page.inner_text("#login-msg")
    assert re.fullmatch(r"For mange forsøg\. Prøv igen om [0-9]+ sek\.", message), message
    await me.screenshot(tmp_path, "throttled")

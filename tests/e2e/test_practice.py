"""The practitioner in real Chromium: /login with a TOTP code, /practice, the room's notes panel.

The account is made through the HTTP API (sign-up, TOTP enrolment, confirmation with a code the
test computes from the enrolment secret); everything after that happens in the browser: log in,
create a consultation, open the practitioner's room link, write a note and an addendum in the
notes panel and export the journal as JSON (a real download, fetched with the Bearer header).
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fortrolig.accounts.totp import totp
from tests.conftest import Server, start_server, stop_server
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
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("6-digit code").fill(totp(secret, time.time()))
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/practice")
    stored = json.loads(await page.evaluate("sessionStorage.getItem('fortrolig.session')"))
    assert stored["access_token"] and stored["refresh_token"].startswith("frt_")
    assert "token" not in page.url and await page.evaluate("localStorage.length <= 1")

    # -- /practice: the tokens rotate (as the page does before the access token expires).
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    assert await page.evaluate(REFRESH)
    rotated = json.loads(await page.evaluate("sessionStorage.getItem('fortrolig.session')"))
    assert rotated["refresh_token"] != stored["refresh_token"]

    # -- a consultation with an e-mail code, its invite and the room link.
    await page.get_by_label("Client's name", exact=True).fill("Anna Jensen")
    await page.get_by_label("Client's e-mail", exact=True).fill(CLIENT_EMAIL)
    await page.get_by_role("button", name="Create consultation").click()
    await page.wait_for_selector("#made:visible")
    invite = await page.input_value("#invite-link")
    assert invite.startswith(node.base_url + "/invite#")
    await page.wait_for_selector("#room-link[href*='/room/']")
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
    assert await page.input_value("#notes-new-name") == "Anna Jensen"
    await page.get_by_role("button", name="Create client").click()
    await page.wait_for_selector("#notes-form:visible")
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

    # -- and on /practice (in Danish): the client's journal with both entries.
    await page.goto(node.base_url + "/practice")
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'")
    await page.get_by_role("button", name="Dansk").click()
    assert await page.inner_text("#clients-heading") == "Journalklienter"
    await page.get_by_role("button", name="Åbn journal: Anna Jensen").click()
    await page.locator("#notes-list .notes__entry--addendum", has_text="Tillæg").wait_for()
    await me.screenshot(tmp_path, "practice-journal")
    await page.get_by_role("button", name="Log ud").click()
    await page.wait_for_url("**/login")
    assert await page.evaluate("sessionStorage.getItem('fortrolig.session')") is None


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
    assert re.fullmatch(r"For mange forsøg\. Prøv igen om [0-9]+ sekunder\.", message), message
    await me.screenshot(tmp_path, "throttled")

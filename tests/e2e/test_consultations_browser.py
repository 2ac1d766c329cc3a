"""Consultations as the practice's records, in real Chromium.

A logged-in practitioner books a consultation for a new client at a date and time: the invite
e-mail names her, gives the time in the practice's zone and carries an .ics entry. A second
consultation for the same client shares the one journal. The node restarts and the list is
still there. The client opens the mailed link, verifies with the e-mailed code and waits; the
practitioner enters the room from the list and admits her. Each page is checked with axe-core.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fortrolig.accounts.totp import totp
from tests.conftest import Server, start_server, stop_server
from tests.e2e.axe_check import assert_accessible
from tests.e2e.conftest import Browsers
from tests.e2e.test_practice import EMAIL, PASSWORD, enrolled_account
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(150)
CLIENT = "anna@example.eu"
ZONE = ZoneInfo("Europe/Copenhagen")


@pytest.fixture
def node(tmp_path: Path, mailbox: Mailbox) -> Iterator[list[Server]]:
    """The node, in a list so that the test can replace it with its restarted self."""
    (tmp_path / "node").mkdir()
    holder = [start_server(tmp_path / "node", mailbox.env)]
    yield holder
    stop_server(holder[0])


def restart(holder: list[Server], mailbox: Mailbox, folder: Path) -> None:
    srv = holder[0]
    port = int(srv.base_url.rsplit(":", 1)[1])
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=20)
    holder[0] = start_server(folder, mailbox.env, port=port)


async def api(page: Any, path: str) -> Any:
    """GET an API path with the page's own access token."""
    return await page.evaluate(
        """async (path) => {
          const s = JSON.parse(sessionStorage.getItem('fortrolig.session'));
          const r = await fetch(path, { headers: { Authorization: `Bearer ${s.access_token}` } });
          return r.json();
        }""",
        path,
    )


async def log_in(page: Any, base: str, secret: bytes) -> None:
    await page.goto(base + "/login")
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("6-digit code").fill(totp(secret, time.time()))
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/practice")
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'", polling=100)


async def book(page: Any, *, client: str | None, day: str = "", at: str = "", send: bool) -> None:
    """Fill the new-consultation form: a new client (``client`` is the name) or the existing
    one chosen in the list (``client`` None), the appointment, and submit."""
    if client is not None:
        await page.select_option("#new-client", "")
        await page.get_by_label("Client's name", exact=True).fill(client)
        await page.get_by_label("Client's e-mail", exact=True).fill(CLIENT)
    else:
        await page.select_option("#new-client", index=1)
        assert await page.input_value("#new-email") == CLIENT  # taken from the journal
    if day:
        await page.fill("#new-date", day)
        await page.fill("#new-time", at)
    await page.select_option("#new-size", "3")
    if send:
        await page.check("#new-send")
    before = await page.input_value("#invite-link")
    await page.get_by_role("button", name="Create consultation").click()
    await page.wait_for_function(
        "old => { const v = document.getElementById('invite-link').value; return v && v !== old; }",
        arg=before,
        polling=100,
    )


async def test_book_mail_restart_verify_and_admit(
    node: list[Server], mailbox: Mailbox, browsers: Browsers, tmp_path: Path
) -> None:
    base = node[0].base_url
    secret = enrolled_account(node[0], mailbox)
    me = await browsers.new_page("practitioner", timezone="Europe/Copenhagen")
    page = me.page
    await log_in(page, base, secret)
    # The form offers what this node has: e-mail code and anonymous (no eID configured), 2-8.
    modes = await page.eval_on_selector_all(
        "#new-verification option", "os => os.map(o => o.value)"
    )
    assert modes == ["email_code", "anonymous"]
    sizes = await page.eval_on_selector_all("#new-size option", "os => os.map(o => o.value)")
    assert sizes == [str(n) for n in range(2, 9)]
    assert "Europe/Copenhagen" in await page.inner_text("#new-zone")
    await assert_accessible(page, "practice")

    # -- book for tomorrow 14:00 Copenhagen time, e-mailed.
    day = (datetime.now(ZONE) + timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, 14, 0, tzinfo=ZONE)
    await book(page, client="Anna Jensen", day=day.isoformat(), at="14:00", send=True)
    await me.screenshot(tmp_path, "booked")
    mail = await mailbox.wait_for(CLIENT, 1)
    assert "Mette has invited you" in mail.body and "Mette har inviteret dig" in mail.body
    zone = start.tzname()
    assert f"kl. 14:00 ({zone})" in mail.body and f", 14:00 ({zone})" in mail.body
    assert "one-time code" in mail.body and "UTC" not in mail.body
    (ics,) = [p for p in mail.message.iter_attachments() if p.get_content_type() == "text/calendar"]
    utc = start.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
    assert f"DTSTART:{utc}" in ics.get_content()

    # -- a second consultation for the same client: one journal for both.
    await book(page, client=None, send=False)
    listed = (await api(page, "/api/v1/consultations"))["consultations"]
    assert len(listed) == 2 and listed[0]["scheduled_at"] == int(start.timestamp())
    assert len({c["journal_client_id"] for c in listed}) == 1 and listed[0]["journal_client_id"]
    clients = (await api(page, "/api/journal/clients"))["clients"]
    assert [c["name"] for c in clients] == ["Anna Jensen"]
    anna = page.locator("#clients li[data-client-id]").first
    assert await anna.locator(".sub-list li[data-consultation-id]").count() == 2
    await me.screenshot(tmp_path, "two-consultations")

    # -- the node restarts: the list comes from the records, not from this tab.
    restart(node, mailbox, tmp_path / "node")
    await page.reload()
    await page.wait_for_function("() => window.fortroligPractice.state === 'ready'", polling=100)
    rows = page.locator("#consultations li[data-consultation-id]")
    assert await rows.count() == 2
    first = rows.first
    when = await first.locator(".plain-list__what").inner_text()
    assert "14:00" in when and zone in when, when
    assert await first.get_attribute("data-state") == "scheduled"

    # -- the client verifies with the mailed code and waits; the practitioner sees it, admits.
    client = await browsers.new_page("Anna", viewport=(390, 844))
    await client.page.goto(mail.link)
    await client.page.wait_for_selector("#code-input:visible")
    await assert_accessible(client.page, "invite code")
    code = (await mailbox.wait_for(CLIENT, 2)).code
    await client.page.fill("#code-input", code)
    await client.page.press("#code-input", "Enter")
    await client.page.wait_for_url("**/room/**")
    await client.page.wait_for_selector("#join-btn:not([disabled])")
    # The check before joining: the node answers, the microphone is heard, the speakers play.
    await client.page.wait_for_selector("#net-check[data-ok=true]")
    assert "Connection to the service: good" in await client.page.inner_text("#net-check")
    await client.page.wait_for_function(
        "() => window.fortrolig.precheck().micPeak > 0.01", polling=100, timeout=15_000
    )
    await client.page.click("#speaker-test")
    await client.page.wait_for_selector("#speaker-msg:has-text('three notes')")
    await assert_accessible(client.page, "client pre-join")
    await client.screenshot(tmp_path, "prejoin")
    await browsers.prejoin(client)
    await client.wait_state("lobby")
    await assert_accessible(client.page, "lobby")
    await page.wait_for_selector(
        "#consultations li[data-state=waiting]", timeout=20_000
    )  # the list follows the room
    await me.screenshot(tmp_path, "client-waiting")
    await first.get_by_role("link", name="Open the consultation room").click()
    await page.wait_for_url("**/room/**")
    await browsers.prejoin(me)
    # The knock: a chime, the tab title and the status line say who is at the door.
    await page.wait_for_function(
        "() => document.title.startsWith('(1) Anna is waiting')", polling=100
    )
    assert "Anna is waiting to be let in" in await page.inner_text("#status")
    assert (await page.evaluate("window.fortrolig.knocks()"))["chimes"] == 1
    await me.screenshot(tmp_path, "knock")
    admit = page.get_by_role("button", name="Admit Anna")
    await admit.click()
    for room in (me, client):
        await room.wait_state("in_session")
    await page.wait_for_function("() => document.title === 'Fortrolig'", polling=100)
    await assert_accessible(page, "room practitioner")
    await me.screenshot(tmp_path, "admitted")
    await page.wait_for_selector("#notes-form:visible")  # the client's journal, opened for her
    chosen = await page.locator("#notes-client option:checked").inner_text()
    assert chosen.startswith("Anna Jensen"), chosen
    # The client's phone drops the tab: the practitioner hears it and reads who it was.
    await client.page.reload()
    await page.wait_for_function(
        "() => window.fortrolig.knocks().chimes === 2", polling=100, timeout=20_000
    )
    assert "Anna: connection lost" in await page.inner_text("#status")
    print(json.dumps({"consultations": [c["state"] for c in listed]}))

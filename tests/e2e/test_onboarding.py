"""A new practitioner in real Chromium: the landing page, sign-up, the confirmation link from
the mail, TOTP enrolment (the code computed from the secret the page shows beside its QR code),
recovery codes, the free trial on /practice, settings, forgotten password (the second factor is
still demanded) and a recovery code that works once. Every page is screenshotted at 1280x800 and
390x844 into the test's folder and checked with axe-core (no serious or critical violation).
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fortrolig.accounts.totp import totp
from tests.conftest import FORTROLIG, Server, start_server, stop_server
from tests.e2e.axe_check import assert_accessible
from tests.e2e.conftest import Browsers, RoomPage
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(120)
EMAIL = "freja.lund@praksis.dk"
PASSWORD = "syv sultne måger på molen"
NEW_PASSWORD = "lilla paraplyer i regnvejr"
LINK = re.compile(r"(https?://\S+/(?:confirm|reset)#flk_[A-Za-z0-9_-]{43})")
DESKTOP, PHONE = (1280, 800), (390, 844)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("onboarding-node"), mailbox.env)
    yield srv
    stop_server(srv)


async def check_page(me: RoomPage, out: Path, label: str) -> None:
    """Screenshot at both sizes and run axe at both; back to the desktop size."""
    for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        await me.page.set_viewport_size({"width": size[0], "height": size[1]})
        await me.screenshot(out, f"{label}-{name}")
        await assert_accessible(me.page, f"{label} at {name}")
    await me.page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})


async def link_in_mail(mailbox: Mailbox, count: int) -> str:
    mail = await mailbox.wait_for(EMAIL, count)
    found = LINK.search(mail.body)
    assert found, mail.body
    return found.group(1)


async def step(page: Any, value: str, within: float = 10.0) -> None:
    await page.wait_for_function(
        "s => window.fortroligAccount && window.fortroligAccount.step === s",
        arg=value,
        timeout=within * 1000,
    )


async def sign_up_and_enrol(
    me: RoomPage, node: Server, mailbox: Mailbox, out: Path
) -> tuple[bytes, list[str]]:
    page = me.page
    await page.goto(node.base_url + "/")
    await check_page(me, out, "home")
    await page.get_by_role("link", name="Create an account").click()
    await page.wait_for_url("**/signup")
    await page.get_by_label("Your name").fill("Freja Lund")
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await check_page(me, out, "signup")
    await page.get_by_role("button", name="Create account").click()
    await step(page, "signed_up")
    assert EMAIL in await page.inner_text("#signup-done-text")
    await check_page(me, out, "signup-sent")

    # -- the link from the mail: confirmed, then the authenticator app.
    await page.goto(await link_in_mail(mailbox, 1))
    await step(page, "confirmed")
    assert "#" not in page.url  # the token left the address bar
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Show the QR code").click()
    await step(page, "enrolling")
    qr = await page.get_attribute("#enrol-qr", "src")
    assert qr and qr.startswith("data:image/svg+xml")
    assert await page.evaluate("document.getElementById('enrol-qr').naturalWidth > 0")
    shown = (await page.inner_text("#enrol-secret")).replace(" ", "")
    uri = await page.evaluate("window.fortroligAccount.otpauth")
    assert f"secret={shown}" in uri  # the QR's payload carries the secret shown as text
    await check_page(me, out, "enrol")
    secret = base64.b32decode(shown + "=" * (-len(shown) % 8))
    await page.get_by_label("6-digit code").fill(totp(secret, time.time()))
    await page.get_by_role("button", name="Confirm").click()
    await step(page, "recovery")
    codes = [c.strip() for c in await page.locator("#recovery-list li").all_inner_texts()]
    assert len(codes) == 10
    await check_page(me, out, "recovery")
    await page.get_by_role("button", name="Continue to your practice").click()
    assert await page.is_visible("#recovery-msg")  # not before the box is ticked
    await page.get_by_label("I have stored my recovery codes.").check()
    await page.get_by_role("button", name="Continue to your practice").click()
    await page.wait_for_url("**/practice")
    return secret, codes


async def plan_state(page: Any, state: str) -> None:
    await page.wait_for_function(
        "s => window.fortroligPlan && window.fortroligPlan.state === s", arg=state, timeout=10_000
    )


async def test_sign_up_enrol_trial_settings_and_reset(
    node: Server,
    mailbox: Mailbox,
    browsers: Browsers,
    tmp_path: Path,
) -> None:
    me = await browsers.new_page("newcomer")
    page = me.page
    secret, codes = await sign_up_and_enrol(me, node, mailbox, tmp_path)

    # -- /practice: no subscription yet, the trial from the page, then what it allows.
    await plan_state(page, "none")
    await check_page(me, tmp_path, "practice-no-plan")
    await page.get_by_role("button", name="Start the 30-day free trial").click()
    await plan_state(page, "trial")
    assert "Free trial until" in await page.inner_text("#plan-state")
    assert "hold consultations" in await page.inner_text("#plan-access")
    assert await page.is_hidden("#plan-trial")
    await check_page(me, tmp_path, "practice-trial")
    pid = await page.evaluate(
        "JSON.parse(sessionStorage.getItem('fortrolig.session')).practitioner_id"
    )

    # -- suspended (an operator's act): said plainly, no trial button, no export promise.
    suspend = [*FORTROLIG, "subscription", "suspend", pid, "--reason", "non_payment"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*suspend, "--data-dir", str(node.data_dir)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    suspended_at = time.time()
    # The suspension refuses every token issued before it (whole seconds): log in again once
    # the clock has passed its second; then the page says plainly what the state allows.
    await asyncio.sleep(max(0.0, math.ceil(suspended_at) - time.time()) + 0.1)
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/login*")
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("6-digit code").fill(codes[1])
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/practice")
    await plan_state(page, "suspended")
    assert "suspended" in await page.inner_text("#plan-state")
    assert "not available" in await page.inner_text("#plan-access")
    assert await page.is_hidden("#plan-trial") and await page.is_hidden("#plan-export")
    await check_page(me, tmp_path, "practice-suspended")

    # -- settings: name, then log out everywhere.
    await page.goto(node.base_url + "/settings")
    await step(page, "ready")
    assert EMAIL in await page.inner_text("#settings-email")
    assert "9" in await page.inner_text("#settings-codes")  # one was used above
    await page.get_by_label("Your name").fill("Freja M. Lund")
    await page.get_by_role("button", name="Save name").click()
    await page.wait_for_selector("#name-form-msg:visible")
    await check_page(me, tmp_path, "settings")
    await page.get_by_role("button", name="Log out everywhere").click()
    await page.wait_for_url("**/login")

    # -- forgotten password by mail: the new password alone does not log in.
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.wait_for_url("**/forgot")
    await page.get_by_label("E-mail").fill(EMAIL)
    await page.get_by_role("button", name="Send the link").click()
    await step(page, "sent")
    await check_page(me, tmp_path, "forgot")
    await page.goto(await link_in_mail(mailbox, 2))
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await check_page(me, tmp_path, "reset")
    await page.get_by_role("button", name="Save the new password").click()
    await step(page, "done")
    await check_page(me, tmp_path, "reset-done")
    await page.get_by_role("link", name="Log in").last.click()
    await page.wait_for_url("**/login")
    await check_page(me, tmp_path, "login")

    async def log_in(second: str) -> None:
        await page.get_by_label("E-mail").fill(EMAIL)
        await page.get_by_label("Password").fill(NEW_PASSWORD)
        await page.get_by_label("6-digit code").fill(second)
        await page.keyboard.press("Enter")

    await page.evaluate("window.fortroligLogin.lastError = null")
    await log_in("000000" if totp(secret, time.time()) != "000000" else "111111")
    await page.wait_for_function("() => window.fortroligLogin.lastError === 'invalid_credentials'")
    # A recovery code instead of the app's code: once.
    await log_in(codes[0])
    await page.wait_for_url("**/practice")
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/login*")
    await page.evaluate("window.fortroligLogin.lastError = null")
    await log_in(codes[0])
    await page.wait_for_function("() => window.fortroligLogin.lastError === 'invalid_credentials'")
    assert "practice" not in page.url


async def test_landing_page_in_danish(node: Server, browsers: Browsers, tmp_path: Path) -> None:
    me = await browsers.new_page("dansk", locale="da-DK")
    await me.page.goto(node.base_url + "/")
    assert "psykologer" in await me.page.inner_text("h1")
    assert await me.page.get_by_role("link", name="Log ind").is_visible()
    await check_page(me, tmp_path, "home-da")
    await me.page.goto(node.base_url + "/signup")
    assert await me.page.get_by_label("Adgangskode", exact=True).is_visible()
    await check_page(me, tmp_path, "signup-da")


def api_account(node: Server, mailbox: Mailbox, email: str) -> dict[str, Any]:
    """An account made through the HTTP API (sign-up, the mailed link, enrolment): its session."""
    from tests.e2e.test_practice import post

    status, _ = post(
        node, "/auth/signup", {"email": email, "display_name": "Ida", "password": PASSWORD}
    )
    assert status == 201
    deadline = time.monotonic() + 10
    while not mailbox.to(email):
        assert time.monotonic() < deadline, "no confirmation mail"
        time.sleep(0.05)
    found = LINK.search(mailbox.to(email)[0].body)
    assert found
    assert post(node, "/auth/email/confirm", {"token": found.group(1).split("#")[1]})[0] == 200
    _, enrolment = post(node, "/auth/totp/enrol", {"email": email, "password": PASSWORD})
    b32 = enrolment["secret"]
    secret = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    body = {"email": email, "password": PASSWORD, "totp": totp(secret, time.time())}
    status, session = post(node, "/auth/totp/confirm", body)
    assert status == 200, session
    return session


async def test_export_only_state_keeps_the_export_reachable(
    node: Server, mailbox: Mailbox, browsers: Browsers, tmp_path: Path
) -> None:
    from fortrolig.accounts.subscription_service import open_subscriptions

    email = "ida.export@praksis.dk"
    session = await asyncio.to_thread(api_account, node, mailbox, email)
    # A trial that ended ten days ago: two months of export-only access follow.
    subs = await open_subscriptions(node.data_dir)
    try:
        await subs.start_trial(
            session["practitioner_id"], email, now=datetime.now(UTC) - timedelta(days=40)
        )
    finally:
        await subs.close()
    me = await browsers.new_page("export-only")
    page = me.page
    await page.goto(node.base_url + "/login")
    stored = {**session, "email": email}
    await page.evaluate(
        "s => sessionStorage.setItem('fortrolig.session', JSON.stringify(s))", stored
    )
    await page.goto(node.base_url + "/practice")
    await plan_state(page, "expired")
    assert await page.evaluate("window.fortroligPlan.access") == "export_only"
    assert "Export only" in await page.inner_text("#plan-access")
    assert await page.is_hidden("#plan-trial")
    await check_page(me, tmp_path, "practice-export-only")
    await page.get_by_role("link", name="Go to the journals and export").click()
    await page.wait_for_function("() => location.hash === '#clients-heading'")
    assert await page.is_visible("#clients-heading")

"""Invite, e-mail code and waiting room in real Chromium: one client admitted, one denied.

The node sends the codes through a real SMTP server (aiosmtpd on 127.0.0.1). The practitioner
admits with the keyboard; until then the waiting client has no peer connection and the SFU no
peer for it.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FORTROLIG, Server, start_server, stop_server
from tests.e2e.conftest import Browsers, RoomPage, eventually
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(120)
EMAIL = "klient@example.eu"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("waiting-node"), mailbox.env)
    yield srv
    stop_server(srv)


def create_consultation(node: Server) -> dict[str, Any]:
    cmd = [*FORTROLIG, "session", "create", "--json", "--data-dir", str(node.data_dir)]
    cmd += ["--base-url", node.base_url, "--verification", "email_code"]
    cmd += ["--client-email", EMAIL, "--client-name", "Klient K"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def reissue(node: Server, made: dict[str, Any]) -> str:
    req = urllib.request.Request(
        f"{node.base_url}/api/v1/consultations/{made['consultation_id']}/invites",
        data=b"{}",
        headers={"Authorization": f"Bearer {made['access_token']}"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return str(json.loads(resp.read())["url"])


async def verify_by_code(
    browsers: Browsers, mailbox: Mailbox, invite_url: str, name: str, nth: int
) -> RoomPage:
    """Open the invite, type the e-mailed code, continue to the room page and join."""
    client = await browsers.new_page(name, viewport=(390, 844))
    await client.page.goto(invite_url)
    assert "#" not in client.page.url  # the secret left the address bar
    await client.page.wait_for_selector("#code-input:visible")
    assert "k***@example.eu" in await client.page.inner_text("#code-sent")
    code = (await mailbox.wait_for(EMAIL, nth)).code
    await client.page.fill("#code-input", code)
    await client.page.press("#code-input", "Enter")
    await client.page.wait_for_url("**/room/**")
    await browsers.prejoin(client)
    await client.wait_state("lobby")
    assert "token" not in client.page.url
    return client


async def test_practitioner_admits_one_client_and_denies_another(
    node: Server, mailbox: Mailbox, browsers: Browsers, tmp_path: Path
) -> None:
    made = create_consultation(node)
    practitioner = await browsers.open(made["practitioner_url"], "Dr. Ørsted")
    await practitioner.wait_state("alone")
    assert await practitioner.page.is_visible("#waiting-empty")

    first = await verify_by_code(browsers, mailbox, made["invite_url"], "Anna", 1)
    assert await first.page.is_visible("#lobby")
    assert "waiting room" in (await first.page.inner_text("#lobby")).lower()
    entry = practitioner.page.locator("#waiting-list li", has_text="Anna")
    await entry.wait_for(timeout=10_000)
    assert "E-mail verified: klient@example.eu" in await entry.inner_text()
    # Waiting is not the media path: no peer connection in the page, no peer in the SFU.
    assert await first.stats() == {}
    assert not first.server_messages("answer") and not first.server_messages("offer")
    await eventually(lambda: _peers_are(node, 1), 10, "only the practitioner's peer")
    await practitioner.screenshot(tmp_path, "waiting-list")
    await first.screenshot(tmp_path, "lobby")

    admit = entry.get_by_role("button", name="Admit Anna")
    await admit.focus()
    await practitioner.page.keyboard.press("Enter")
    await first.wait_state("in_session")
    await practitioner.wait_state("in_session")
    assert await first.page.is_hidden("#lobby")
    await eventually(lambda: _peers_are(node, 2), 10, "the admitted client's peer")

    second = await verify_by_code(browsers, mailbox, reissue(node, made), "Bo", 2)
    entry = practitioner.page.locator("#waiting-list li", has_text="Bo")
    await entry.wait_for(timeout=10_000)
    await entry.get_by_role("button", name="Deny Bo").click()
    await second.wait_state("ended")
    assert "did not let you" in await second.page.inner_text("#ended-msg")
    await entry.wait_for(state="detached", timeout=5_000)
    assert await practitioner.state() == "in_session" and await first.state() == "in_session"
    assert await _peers_are(node, 2)
    await second.screenshot(tmp_path, "denied")
    await practitioner.screenshot(tmp_path, "after")


async def _peers_are(node: Server, n: int) -> bool:
    return node.metric("fortrolig_media_peers") == n

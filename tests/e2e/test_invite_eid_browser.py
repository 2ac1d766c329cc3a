"""An eID invite in real Chromium: the invite page goes to the (real, test) OpenID Provider, the
user logs in and consents there, the node's callback opens the room page with the join token, and
the practitioner sees the client waiting with its verified name. Error codes coming back from the
callback are shown on the invite page, in English and Danish.

The provider and the node come from tests/integration/signaling/test_invite_eid.py (`eid_node`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FORTROLIG
from tests.e2e.conftest import Browsers
from tests.integration.signaling.test_eid_provider import SUBSTANTIAL
from tests.integration.signaling.test_invite_eid import EidNode, eid_node

pytestmark = pytest.mark.timeout(120)
__all__ = ["eid_node"]  # the module-scoped fixture, shared with the integration test


def create_eid_consultation(node: EidNode) -> dict[str, Any]:
    server = node.server
    cmd = [*FORTROLIG, "session", "create", "--json", "--data-dir", str(server.data_dir)]
    cmd += ["--base-url", server.base_url, "--verification", "eid"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


async def test_eid_invite_through_the_provider_to_the_waiting_room(
    eid_node: EidNode, browsers: Browsers, tmp_path: Path
) -> None:
    made = create_eid_consultation(eid_node)
    practitioner = await browsers.open(made["practitioner_url"], "Dr. Ørsted")
    await practitioner.wait_state("alone")

    client = await browsers.new_page("Anna", viewport=(390, 844))
    await client.page.goto(made["invite_url"])
    await client.page.wait_for_url(eid_node.issuer + "/**")  # the invite page sent us on
    await client.page.fill("input[name=login]", "anna")
    await client.page.select_option("select[name=acr]", SUBSTANTIAL)
    await client.page.click("button[type=submit]")
    await client.page.wait_for_selector("form[action$='/confirm']")  # consent
    await client.page.click("button[type=submit]")
    await client.page.wait_for_url("**/room/**")  # callback → 303 → the room page
    await browsers.prejoin(client)
    await client.wait_state("lobby")
    assert "token" not in client.page.url

    entry = practitioner.page.locator("#waiting-list li", has_text="Anna")
    await entry.wait_for(timeout=10_000)
    assert "Verified with MitID: Anna Testesen" in await entry.inner_text()
    await practitioner.screenshot(tmp_path, "eid-waiting-list")

    await entry.locator("button[data-action=admit]").click()
    await client.wait_state("in_session")

    # Anna closes the tab, then opens her invitation again: MitID again, the waiting room again,
    # shown as returning; admitted, she is back in the call (her held place is given up).
    await client.page.close()
    back = await browsers.new_page("Anna again", viewport=(390, 844))
    await back.page.goto(made["invite_url"])
    await back.page.wait_for_url(eid_node.issuer + "/**")
    await back.page.fill("input[name=login]", "anna")
    await back.page.select_option("select[name=acr]", SUBSTANTIAL)
    await back.page.click("button[type=submit]")
    await back.page.wait_for_selector("form[action$='/confirm']")
    await back.page.click("button[type=submit]")
    await back.page.wait_for_url("**/room/**")
    await browsers.prejoin(back)
    await back.wait_state("lobby")
    returning = practitioner.page.locator("#waiting-list li[data-returning=true]", has_text="Anna")
    await returning.wait_for(timeout=10_000)
    assert "Returning" in await returning.inner_text()
    await practitioner.screenshot(tmp_path, "eid-returning")
    await returning.locator("button[data-action=admit]").click()
    await back.wait_state("in_session")
    await practitioner.wait_state("in_session")


@pytest.mark.parametrize(
    ("locale", "code", "text"),
    [
        ("en-GB", "eid_authorization_denied", "The MitID login was cancelled"),
        ("da-DK", "eid_state_expired", "MitID-login udløb"),
        ("da-DK", "eid_id_token_invalid", "MitID-login kunne ikke gennemføres"),
        ("en-GB", "eid_discovery_failed", "MitID cannot be reached"),
        ("en-GB", "invite_used", "already used"),
    ],
)
async def test_callback_errors_are_shown_on_the_invite_page(
    eid_node: EidNode, browsers: Browsers, locale: str, code: str, text: str
) -> None:
    page = (await browsers.new_page("Client", locale=locale)).page
    await page.goto(f"{eid_node.server.base_url}/invite#error={code}")
    await page.wait_for_selector("#invite-error:visible")
    assert text in await page.inner_text("#invite-error")
    assert "#" not in page.url

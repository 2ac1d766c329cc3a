"""The lockout cannot be turned against the owner (issue 18, item 0), on a real node.

Five wrong passwords from five loopback addresses (127.0.6.1-5; no trusted proxy, so the
connection's address is the client's) lock those addresses and start the account's own
backoff; the owner, from a sixth address with the right password and the current code, gets
in, and is told by e-mail that sign-ins were locked.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from fortrolig.accounts.totp import hotp, time_step
from tests.conftest import Server, start_server, stop_server
from tests.mailbox import Mailbox

EMAIL = "owner@klinik.dk"
PASSWORD = "a long and good passphrase 7"
ATTACKERS = [f"127.0.6.{n}" for n in range(1, 6)]
OWNER = "127.0.6.9"
CONFIRM_LINK = re.compile(r"/confirm#(flk_[A-Za-z0-9_-]{43})")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    # A minute's backoff from the fifth failure: the test's steps all fall inside it.
    env = {**mailbox.env, "FORTROLIG_ACCOUNTS__LOCKOUT_BASE_S": "60"}
    srv = start_server(tmp_path_factory.mktemp("lockout"), env)
    yield srv
    stop_server(srv)


def code(secret_b32: str, offset_steps: int = 0) -> str:
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return hotp(secret, time_step(time.time()) + offset_steps)


class From:
    """HTTP from one loopback source address."""

    def __init__(self, node: Server, address: str) -> None:
        self.node = node
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.node.base_url + path, json=body) as resp:
            return resp.status, await resp.json()

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def clients(node: Server) -> AsyncIterator[dict[str, From]]:
    made = {a: From(node, a) for a in [*ATTACKERS, OWNER, "127.0.6.20", "127.0.6.21"]}
    yield made
    for each in made.values():
        await each.close()


async def enrol(client: From, mailbox: Mailbox) -> str:
    """Sign up, confirm the e-mail by its link (the node sends mail), enrol TOTP."""
    status, _ = await client.post(
        "/auth/signup", {"email": EMAIL, "display_name": "Ejer", "password": PASSWORD}
    )
    assert status == 201
    link = (await mailbox.wait_for(EMAIL, 1)).body
    found = CONFIRM_LINK.search(link)
    assert found, link
    status, confirmed = await client.post("/auth/email/confirm", {"token": found.group(1)})
    assert status == 200, confirmed
    status, enrolment = await client.post(
        "/auth/totp/enrol", {"email": EMAIL, "password": PASSWORD}
    )
    assert status == 200, enrolment
    secret = str(enrolment["secret"])
    body = {"email": EMAIL, "password": PASSWORD, "totp": code(secret)}
    status, confirmed = await client.post("/auth/totp/confirm", body)
    assert status == 200, confirmed
    return secret


async def test_five_addresses_cannot_lock_the_owner_out(
    node: Server, clients: dict[str, From], mailbox: Mailbox
) -> None:
    secret = await enrol(clients["127.0.6.20"], mailbox)
    wrong = {"email": EMAIL, "password": "not the passphrase at all", "totp": "000000"}
    answers = [(await clients[a].post("/auth/login", wrong))[0] for a in ATTACKERS]
    assert answers == [401] * 5  # the fifth failure starts the account's backoff
    # The account is in its backoff now: anything short of password and code, from any
    # address, is login_throttled (no answer tells a right password from a wrong one).
    for body in (wrong, {**wrong, "password": PASSWORD}):
        status, refused = await clients["127.0.6.21"].post("/auth/login", body)
        assert status == 429 and refused["error"]["code"] == "login_throttled"
    # The owner, from a sixth address, with the right password and the code: in.
    # (The next step's code: confirming spent this one, and it is within the window.)
    right = {"email": EMAIL, "password": PASSWORD, "totp": code(secret, 1)}
    status, session = await clients[OWNER].post("/auth/login", right)
    assert status == 200, session
    assert session["access_token"] and session["refresh_token"]
    # She was told, once, by e-mail (no address or time in it).
    # (Mail 1 was the confirmation link.)
    alert = await mailbox.wait_for(EMAIL, 2)
    assert "Failed sign-in attempts" in str(alert.message["Subject"])
    assert not any(a in alert.body for a in ATTACKERS)
    assert len(mailbox.to(EMAIL)) == 2
    log = node.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log


async def test_an_attacking_address_locks_itself(node: Server) -> None:
    attacker = From(node, "127.0.6.30")
    try:
        statuses = []
        for n in range(7):  # password spraying: another account every time
            body = {"email": f"victim{n}@klinik.dk", "password": "not it at all", "totp": "000000"}
            statuses.append((await attacker.post("/auth/login", body))[0])
    finally:
        await attacker.close()
    assert statuses == [401] * 5 + [429, 429]

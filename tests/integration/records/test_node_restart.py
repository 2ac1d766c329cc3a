"""A single node restarted (SIGKILL or SIGTERM) loses nothing it acknowledged: an invite sent
before still works, an e-mail code received before can be entered after, a used join token
stays used, an admitted client is still admitted, and consultations are still there. On the
embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fortrolig.loadtests.participant import Participant
from tests.conftest import Server, fresh_database, start_server, stop_server
from tests.integration.signaling.test_invites import access_token, secret_of
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(90)
EMAIL = "klient@example.eu"


@pytest.fixture(params=["sqlite", "postgresql"])
async def records_env(
    request: pytest.FixtureRequest, tmp_path: Path, mailbox: Mailbox
) -> dict[str, str]:
    env = dict(mailbox.env)
    if request.param == "postgresql":
        env["FORTROLIG_RECORDS__DATABASE_URL"] = await fresh_database(request, tmp_path, "rec")
    return env


class Node:
    """One node whose process is restarted on the same data dir and port."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        folder.mkdir(parents=True, exist_ok=True)
        self.server: Server = start_server(folder, env)

    def restart(self, how: signal.Signals) -> None:
        port = int(self.server.base_url.rsplit(":", 1)[1])
        self.server.proc.send_signal(how)
        self.server.proc.wait(timeout=15)
        self.server = start_server(self.folder, self.env, port=port)

    async def call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {access_token(self.server)}"} if auth else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.server.base_url + path, json=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json()


@pytest.fixture
async def node(tmp_path: Path, records_env: dict[str, str]) -> AsyncIterator[Node]:
    n = Node(tmp_path / "node", records_env)
    yield n
    stop_server(n.server)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_invites_codes_and_consultations_survive_a_restart(
    node: Node, mailbox: Mailbox, how: signal.Signals
) -> None:
    status, anon = await node.call("POST", "/api/v1/consultations", {"verification": "anonymous"})
    assert status == 201, anon
    status, journal = await node.call("POST", "/api/journal/clients", {"name": "Anna"})
    assert status == 201, journal
    when = int(time.time()) + 3 * 86_400
    body = {
        "verification": "email_code",
        "client_email": EMAIL,
        "client_name": "Anna",
        "scheduled_at": when,
        "journal_client_id": journal["id"],
    }
    status, coded = await node.call("POST", "/api/v1/consultations", body)
    assert status == 201, coded
    assert coded["scheduled_at"] == when and coded["journal_client_id"] == journal["id"]
    status, refused = await node.call(
        "POST", "/api/v1/consultations", {**body, "journal_client_id": "cli_nobody"}
    )
    assert (status, refused["error"]["code"]) == (404, "journal_client_not_found")
    before = len(mailbox.to(EMAIL))
    status, sent = await node.call(
        "POST", "/api/v1/invite/redeem", {"invite": secret_of(coded["invite"]["url"])}, False
    )
    assert status == 200 and sent["status"] == "code_sent", sent
    code = (await mailbox.wait_for(EMAIL, before + 1)).code

    node.restart(how)

    status, shown = await node.call("GET", f"/api/v1/consultations/{coded['consultation_id']}")
    assert status == 200 and shown["client_name"] == "Anna", shown
    # The practitioner's list is the records' (the refused one was never made).
    status, listed = await node.call("GET", "/api/v1/consultations")
    assert status == 200, listed
    rows = {c["consultation_id"]: c for c in listed["consultations"]}
    assert set(rows) == {coded["consultation_id"], anon["consultation_id"]}
    assert rows[coded["consultation_id"]]["scheduled_at"] == when
    assert rows[coded["consultation_id"]]["journal_client_id"] == journal["id"]
    assert {c["state"] for c in rows.values()} == {"scheduled"}
    status, of_anna = await node.call(
        "GET", f"/api/v1/consultations?journal_client_id={journal['id']}"
    )
    assert [c["consultation_id"] for c in of_anna["consultations"]] == [coded["consultation_id"]]
    # The code e-mailed before the restart is entered after it.
    status, grant = await node.call(
        "POST", "/api/v1/invite/verify", {"handle": sent["handle"], "code": code}, False
    )
    assert status == 200, grant
    # The anonymous invite sent yesterday still works, and works again after a restart (the
    # node remembers it was used: the second client is returning).
    secret = secret_of(anon["invite"]["url"])
    status, anon_grant = await node.call("POST", "/api/v1/invite/redeem", {"invite": secret}, False)
    assert status == 200, anon_grant
    node.restart(how)
    status, again = await node.call("POST", "/api/v1/invite/redeem", {"invite": secret}, False)
    assert status == 200 and again["token"] != anon_grant["token"], again
    # Both grants still join their rooms (the rooms are records, not node memory).
    joins = ((coded["room_id"], grant["token"]), (anon["room_id"], anon_grant["token"]))
    for room_id, token in joins:
        p = Participant(node.server.ws_url, token)
        try:
            welcome = await p.connect()
            assert welcome["type"] == "welcome" and welcome["room_id"] == room_id
        finally:
            await p.close()


async def test_a_used_join_token_stays_used_and_an_admission_holds(node: Node) -> None:
    status, room = await node.call("POST", "/api/v1/rooms", {"waiting_room": True})
    assert status == 201
    path = f"/api/v1/rooms/{room['room_id']}/tokens"
    tokens = {}
    for role in ("practitioner", "client"):
        status, body = await node.call("POST", path, {"role": role})
        tokens[role] = body["token"]
    doctor = Participant(node.server.ws_url, tokens["practitioner"])
    client = Participant(node.server.ws_url, tokens["client"])
    try:
        assert (await doctor.connect())["type"] == "welcome"
        await doctor.join()
        assert (await client.connect())["type"] == "welcome"
        await client.send({"type": "join"})
        await client.expect("waiting")
        await doctor.send({"type": "admit", "participant_id": client.participant_id})
        await client.expect("joined")
        resume = client.resume_token
    finally:
        await doctor.close()
        await client.close()

    node.restart(signal.SIGKILL)

    replay = Participant(node.server.ws_url, tokens["client"])
    back = Participant(node.server.ws_url, resume or "")
    try:
        refused = await replay.connect()
        assert (refused["type"], refused.get("code")) == ("error", "token_replayed")
        welcome = await back.connect()
        assert welcome["type"] == "welcome"
        assert (await back.join())["type"] == "joined"  # admitted before: not the waiting room
    finally:
        await replay.close()
        await back.close()

"""eID invites end to end: a real `fortrolig serve` with an `[eid]` section and a real OpenID
Provider (panva/oidc-provider, tests/oidc) on 127.0.0.1.

The provider starts first, with our client registered for the node's default redirect URI
(`<public_url>/eid/callback` on a port chosen up front); then the node, configured through the
environment. A practitioner creates an `eid` consultation with the node's API; redeeming its
invite answers the provider's authorization URL; a "browser" (aiohttp, as in
test_eid_provider.py) logs in and consents there and is redirected to the node's callback, which
answers 303 to the room page with the join token in the fragment (or to the invite page with an
error code). The client then joins and the practitioner sees it waiting with its verified name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from fortrolig.loadtests.participant import Participant
from tests.conftest import Server, free_port, start_server, stop_server
from tests.integration.signaling.test_eid_provider import SUBSTANTIAL, browse_login, run_provider
from tests.integration.signaling.test_invites import (
    Api,
    access_token,
    practitioner_in,
    secret_of,
)

pytestmark = pytest.mark.timeout(90)
CLIENT_ID = "fortrolig-node"


@dataclass
class EidNode:
    server: Server
    issuer: str
    callback: str


@pytest.fixture(scope="module")
def eid_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EidNode]:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/eid/callback"  # the node's default redirect_uri
    secret = secrets.token_urlsafe(36)
    work = tmp_path_factory.mktemp("eid")
    secret_file = work / "eid-client-secret"
    secret_file.write_text(secret + "\n")
    os.chmod(secret_file, 0o600)
    client = {
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [callback],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "subject_type": "pairwise",
    }
    with run_provider(work, free_port(), [client]) as issuer:
        env = {
            "FORTROLIG_EID__ISSUER": issuer,
            "FORTROLIG_EID__CLIENT_ID": CLIENT_ID,
            "FORTROLIG_EID__CLIENT_SECRET_FILE": str(secret_file),
            "FORTROLIG_EID__SCOPES": "profile",
            "FORTROLIG_EID__ACR_VALUES": SUBSTANTIAL,
            "FORTROLIG_EID__ALLOW_INSECURE_LOOPBACK": "true",
            "FORTROLIG_MEDIA__WORKERS": "1",
        }
        (work / "node").mkdir()
        server = start_server(work / "node", env, port=port)
        try:
            yield EidNode(server, issuer, callback)
        finally:
            stop_server(server)


@pytest.fixture
async def api(eid_node: EidNode) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(eid_node.server, http, access_token(eid_node.server))


async def start_login(api: Api, secret: str) -> str:
    """Redeem an eid invite: the provider's authorization URL."""
    status, body = await api.redeem(secret)
    assert status == 200, body
    assert (body["status"], body["verification"]) == ("eid_redirect", "eid"), body
    return str(body["redirect"])


async def callback(api: Api, query: dict[str, str]) -> str:
    """GET the node's callback like the browser would; the 303's Location."""
    url = f"{api.server.base_url}/eid/callback?{urlencode(query)}"
    async with api.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        return resp.headers["Location"]


async def eid_consultation(api: Api) -> tuple[str, str]:
    """(room id, invite secret) of a new eid consultation."""
    c = await api.consultation(verification="eid", client_name="Anna T.")
    assert c["verification"] == "eid"
    return c["room_id"], secret_of(c["invite"]["url"])


async def test_eid_invite_login_callback_join_and_waiting_room(api: Api, eid_node: EidNode) -> None:
    room_id, secret = await eid_consultation(api)
    auth_url = await start_login(api, secret)
    query = parse_qs(urlsplit(auth_url).query)
    assert query["redirect_uri"] == [eid_node.callback] and query["scope"] == ["openid profile"]
    assert secret not in auth_url  # the invite secret never leaves for the broker
    back = await browse_login(auth_url, eid_node.callback)
    assert back["iss"] == eid_node.issuer

    location = await callback(api, back)
    prefix = f"/room/{room_id}#role=client&token="
    assert location.startswith(prefix), location
    token = location.removeprefix(prefix)
    # The same callback again: the login is spent (the invite itself works again: a new login).
    assert await callback(api, back) == "/invite#error=eid_state_unknown"

    doctor = await practitioner_in(api, room_id)
    client = Participant(api.server.ws_url, token)
    try:
        assert (await client.connect())["type"] == "welcome"
        await client.send({"type": "join"})
        assert (await client.expect("waiting", "joined", "error"))["type"] == "waiting"
        listed = (await doctor.expect("waiting_room"))["clients"]
        assert listed == [
            {
                "id": client.participant_id,
                "verification": "eid",
                "name": "Anna Testesen",
                "verified": "Anna Testesen",
                "returning": False,
            }
        ]
        await doctor.send({"type": "admit", "participant_id": client.participant_id})
        assert (await client.expect("joined"))["type"] == "joined"
    finally:
        await client.close()
        await doctor.close()


async def test_failed_or_abandoned_logins_do_not_consume_the_invite(
    api: Api, eid_node: EidNode
) -> None:
    room_id, secret = await eid_consultation(api)

    # A tampered state: refused, back to the invite page with the code.
    back = await browse_login(await start_login(api, secret), eid_node.callback, account="bo")
    tampered = {**back, "state": back["state"][:-1] + ("A" if back["state"][-1] != "A" else "B")}
    assert await callback(api, tampered) == "/invite#error=eid_state_unknown"

    # The user cancels at the broker: the broker sends error=access_denied with our state.
    state = parse_qs(urlsplit(await start_login(api, secret)).query)["state"][0]
    denied = {"error": "access_denied", "state": state}
    assert await callback(api, denied) == "/invite#error=eid_authorization_denied"

    # No parameters at all, or repeated ones.
    assert await callback(api, {}) == "/invite#error=eid_state_unknown"
    url = f"{api.server.base_url}/eid/callback?state=a&state=b&code=c"
    async with api.http.get(url, allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/invite#error=eid_callback_invalid"
    async with api.http.head(url, allow_redirects=False) as resp:
        assert resp.status == 405  # a HEAD never spends a login

    # The invite is still open: a complete login now succeeds.
    back = await browse_login(await start_login(api, secret), eid_node.callback, account="bo")
    location = await callback(api, back)
    assert location.startswith(f"/room/{room_id}#role=client&token="), location


async def test_two_logins_for_one_invite_both_get_to_the_waiting_room(
    api: Api, eid_node: EidNode
) -> None:
    # Each use of an invite verifies afresh; the practitioner decides whom to admit.
    _, secret = await eid_consultation(api)
    first = await browse_login(await start_login(api, secret), eid_node.callback)
    second = await browse_login(await start_login(api, secret), eid_node.callback, account="bo")
    assert (await callback(api, first)).startswith("/room/")
    assert (await callback(api, second)).startswith("/room/")

"""The subscription gate on a real node with billing enforced: suspension ends a live session
within 5 s, refuses new rooms, joins and older tokens; lifting it restores access."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from fortrolig.loadtests.participant import Participant
from tests.conftest import FORTROLIG, Server, start_server, stop_server


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("gate"), {"FORTROLIG_BILLING__ENFORCE": "true"})
    yield srv
    stop_server(srv)


def admin(node: Server, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [*FORTROLIG, "subscription", *args, "--json", "--data-dir", str(node.data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def post(
    node: Server, path: str, token: str, body: dict[str, object]
) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(
        node.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read()))


async def test_suspension_ends_a_live_session_within_5_s_and_lifting_restores(node: Server) -> None:
    session = node.session()  # the dev practitioner gets a paid plan (billing is enforced)
    practitioner = Participant(node.ws_url, session["practitioner_token"])
    client = Participant(node.ws_url, session["client_token"])
    try:
        for p in (practitioner, client):
            assert (await p.connect())["type"] == "welcome"
            assert (await p.join())["type"] == "joined"
        suspended_at = time.monotonic()
        shown = admin(node, "suspend", "dev-practitioner", "--reason", "misuse")
        assert shown["access"] == "none"
        for p in (practitioner, client):
            bye = await p.expect("bye", within=5)
            assert bye["reason"].startswith("subscription_")
            assert (await p.expect("closed", within=2))["code"] == 1000
        assert time.monotonic() - suspended_at < 5.0
    finally:
        await practitioner.close()
        await client.close()

    # Suspended: the old access token is refused (issued before the suspension), and so is a
    # resume of either participant (the room is gone).
    status, body = post(node, "/api/v1/rooms", session["access_token"], {})
    assert status == 401 and body["error"]["code"] == "token_revoked"  # type: ignore[index]
    ghost = Participant(node.ws_url, practitioner.resume_token or "")
    try:
        refused = await ghost.connect()
        assert refused["type"] == "error"
    finally:
        await ghost.close()

    await asyncio.sleep(1.1)  # tokens have whole-second iat: the next one is from after
    admin(node, "lift", "dev-practitioner")
    again = node.session()  # a fresh access token works again
    p2 = Participant(node.ws_url, again["practitioner_token"])
    try:
        assert (await p2.connect())["type"] == "welcome"
    finally:
        await p2.close()


def test_a_practitioner_without_a_subscription_cannot_create_rooms(node: Server) -> None:
    from fortrolig.core.clock import SystemClock
    from fortrolig.core.keys import load_or_create_signing_keys
    from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind

    key, _ = load_or_create_signing_keys(node.data_dir)
    token = TokenIssuer(key, "fortrolig", SystemClock()).issue(
        TokenKind.ACCESS, "nobody-paid", Role.PRACTITIONER, ttl_s=60
    )
    rooms = node.metric("fortrolig_rooms")
    status, body = post(node, "/api/v1/rooms", token, {})
    assert status == 403 and body["error"]["code"] == "subscription_required"  # type: ignore[index]
    status, body = post(node, "/api/v1/consultations", token, {"verification": "anonymous"})
    assert status == 403 and body["error"]["code"] == "subscription_required"  # type: ignore[index]
    assert node.metric("fortrolig_rooms") == rooms

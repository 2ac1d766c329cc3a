"""Consultations, invites, e-mail codes and the waiting room against a real `fortrolig serve`.

The node sends e-mail through a real SMTP server (aiosmtpd on 127.0.0.1) that this module starts
and stops; clients are real WebSocket participants (aiortc where media is involved).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import SigningKey
from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import ToneAudioTrack
from fortrolig.signaling import verification as v
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import FORTROLIG, Server, start_server, stop_server
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(60)
EMAIL = "klient@example.eu"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("invites"), mailbox.env)
    yield srv
    stop_server(srv)


def access_token(server: Server, subject: str = "dev-practitioner") -> str:
    (path,) = (server.data_dir / "keys").glob("signing-*.pem")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    signing = SigningKey(path.stem.removeprefix("signing-"), key)
    issuer = TokenIssuer(signing, "fortrolig", SystemClock())
    return issuer.issue(TokenKind.ACCESS, subject, Role.PRACTITIONER, ttl_s=900)


@dataclass
class Api:
    server: Server
    http: aiohttp.ClientSession
    access: str

    async def call(
        self, method: str, path: str, body: Any = None, auth: bool = True
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.access}"} if auth else {}
        data = body if isinstance(body, str) else None
        js = None if isinstance(body, str) else body
        async with self.http.request(
            method, self.server.base_url + path, json=js, data=data, headers=headers
        ) as resp:
            if path.startswith("/api/v1/invite/") or path.startswith("/api/v1/consultations"):
                assert resp.headers.get("Cache-Control") == "no-store" or resp.status >= 400
            return resp.status, await resp.json()

    async def consultation(self, **body: Any) -> dict[str, Any]:
        status, data = await self.call("POST", "/api/v1/consultations", body)
        assert status == 201, data
        return data

    async def redeem(self, secret: str) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", "/api/v1/invite/redeem", {"invite": secret}, auth=False)

    async def verify(self, handle: str, code: str) -> tuple[int, dict[str, Any]]:
        body = {"handle": handle, "code": code}
        return await self.call("POST", "/api/v1/invite/verify", body, auth=False)

    async def practitioner_token(self, room_id: str) -> str:
        path = f"/api/v1/rooms/{room_id}/tokens"
        status, data = await self.call("POST", path, {"role": "practitioner"})
        assert status == 201, data
        return str(data["token"])

    async def anonymous_client(self) -> tuple[str, str]:
        """(room id, client join token) of a fresh anonymous consultation."""
        c = await self.consultation(verification="anonymous")
        status, grant = await self.redeem(secret_of(c["invite"]["url"]))
        assert status == 200, grant
        return c["room_id"], grant["token"]


def secret_of(url: str) -> str:
    return url.split("#", 1)[1]


def error(status: int, body: dict[str, Any], want_status: int, code: str) -> None:
    assert (status, body["error"]["code"]) == (want_status, code), body


@pytest.fixture
async def api(node: Server) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(node, http, access_token(node))


async def practitioner_in(api: Api, room_id: str) -> Participant:
    doctor = Participant(api.server.ws_url, await api.practitioner_token(room_id), name="Dr. Ø")
    assert (await doctor.connect())["type"] == "welcome"
    assert (await doctor.join())["type"] == "joined"
    assert (await doctor.expect("waiting_room"))["clients"] == []
    return doctor


async def media_peers_are(server: Server, n: int) -> None:
    for _ in range(40):
        if server.metric("fortrolig_media_peers") == n:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"media peers {server.metric('fortrolig_media_peers')} != {n}")


async def test_email_code_through_real_smtp_then_waiting_room_and_admission(
    api: Api, mailbox: Mailbox
) -> None:
    c = await api.consultation(
        verification="email_code", client_email=EMAIL, client_name="Klient K", send_invite=True
    )
    assert c["invite"]["sent"] is True and c["client_email"] == EMAIL
    invite_mail = await mailbox.wait_for(EMAIL)
    assert invite_mail.link == c["invite"]["url"] and "/invite#" in invite_mail.link
    assert invite_mail.message["From"] == "noreply@fortrolig.example.eu"

    status, sent = await api.redeem(secret_of(invite_mail.link))
    assert status == 200, sent
    assert (sent["status"], sent["email_hint"], sent["attempts_left"]) == (
        "code_sent",
        "k***@example.eu",
        5,
    )
    code = (await mailbox.wait_for(EMAIL, 2)).code
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    status, body = await api.verify(sent["handle"], wrong)
    error(status, body, 401, "code_invalid")
    assert body["error"]["attempts_left"] == 4
    status, grant = await api.verify(sent["handle"], code)
    assert status == 200 and grant["status"] == "verified", grant
    assert grant["room_url"] == f"/room/{c['room_id']}#role=client&token={grant['token']}"
    # The invite works again, but sends no second code within the resend interval.
    status, body = await api.redeem(secret_of(invite_mail.link))
    error(status, body, 429, "invite_throttled")
    error(*await api.verify(sent["handle"], code), 409, "code_used")

    doctor = await practitioner_in(api, c["room_id"])
    client = Participant(api.server.ws_url, grant["token"], tracks=[ToneAudioTrack()])
    try:
        welcome = await client.connect()
        assert welcome["type"] == "welcome"
        await client.send({"type": "join"})
        assert (await client.expect("waiting", "joined", "error"))["type"] == "waiting"
        listed = (await doctor.expect("waiting_room"))["clients"]
        assert listed == [
            {
                "id": client.participant_id,
                "verification": "email_code",
                "name": "Klient K",
                "verified": EMAIL,
                "returning": False,
            }
        ]
        # Nothing reaches the media path before admission.
        await client.send({"type": "offer", "sdp": "v=0\r\n"})
        err = await client.expect("error")
        assert (err["code"], err["ref"]) == ("not_admitted", "offer")
        await media_peers_are(api.server, 1)
        assert api.server.metric("fortrolig_waiting_clients") == 1
        assert api.server.metric("fortrolig_participants") == 1

        await doctor.send({"type": "admit", "participant_id": client.participant_id})
        joined = await client.expect("joined")
        assert [p["id"] for p in joined["participants"]] == [doctor.participant_id]
        assert (await doctor.expect("participant_joined"))["participant"]["name"] == "Klient K"
        assert (await doctor.expect("waiting_room"))["clients"] == []
        await client.publish(welcome)  # the media path is open now
        await media_peers_are(api.server, 2)
        assert api.server.metric("fortrolig_waiting_clients") == 0
    finally:
        await client.close()
        await doctor.close()


async def test_100_concurrent_redemptions_send_one_code(api: Api, mailbox: Mailbox) -> None:
    address = "race-email_code@example.eu"
    c = await api.consultation(verification="email_code", client_email=address)
    secret = secret_of(c["invite"]["url"])
    # 100 clients from 4 addresses, 25 each (one address may hold 64 connections at once).
    sources = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.8.{n}", 0)))
        for n in range(1, 5)
    ]
    try:
        apis = [replace(api, http=http) for http in sources]
        results = await asyncio.gather(*(apis[i % 4].redeem(secret) for i in range(100)))
    finally:
        for http in sources:
            await http.close()
    ok = [b for s, b in results if s == 200]
    refused = {(s, b["error"]["code"]) for s, b in results if s != 200}
    assert len(ok) == 1 and refused == {(429, "invite_throttled")}, refused
    await mailbox.wait_for(address)
    await asyncio.sleep(0.5)
    assert len(mailbox.to(address)) == 1  # one code e-mail, not a hundred


async def test_code_attempts_exhausted_refuses_even_the_right_code(
    api: Api, mailbox: Mailbox
) -> None:
    address = "attempts@example.eu"
    c = await api.consultation(verification="email_code", client_email=address)
    status, sent = await api.redeem(secret_of(c["invite"]["url"]))
    assert status == 200
    code = (await mailbox.wait_for(address)).code
    wrong = f"{(int(code) + 5) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        status, body = await api.verify(sent["handle"], wrong)
        error(status, body, 401, "code_invalid")
        assert body["error"]["attempts_left"] == left
    error(*await api.verify(sent["handle"], wrong), 403, "code_attempts_exhausted")
    error(*await api.verify(sent["handle"], code), 403, "code_attempts_exhausted")


BAD_CREATE = [
    ({}, 400, "verification_required"),
    ({"verification": "sms"}, 400, "bad_field"),
    ({"verification": "email_code"}, 400, "client_email_required"),
    ({"verification": "email_code", "client_email": "nope"}, 400, "bad_email"),
    ({"verification": "anonymous", "client_name": "Anna"}, 400, "anonymous_identity"),
    ({"verification": "eid", "max_participants": 99}, 400, "bad_room_size"),
    ({"verification": "eid", "surprise": True}, 400, "bad_field"),
    ("{not json", 400, "bad_json"),
    ("[1]", 400, "bad_json"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_CREATE)
async def test_bad_consultation_requests_change_nothing(
    api: Api, body: Any, status: int, code: str
) -> None:
    rooms = api.server.metric("fortrolig_rooms")
    made = api.server.metric("fortrolig_consultations_total")
    error(*await api.call("POST", "/api/v1/consultations", body), status, code)
    assert api.server.metric("fortrolig_rooms") == rooms
    assert api.server.metric("fortrolig_consultations_total") == made


async def test_auth_and_ownership_of_consultations(api: Api) -> None:
    error(
        *await api.call("POST", "/api/v1/consultations", {"verification": "eid"}, auth=False),
        401,
        "token_missing",
    )
    c = await api.consultation(verification="eid")
    path = f"/api/v1/consultations/{c['consultation_id']}"
    status, shown = await api.call("GET", path)
    assert status == 200 and shown["verification"] == "eid" and shown["room_id"] == c["room_id"]
    other = Api(api.server, api.http, access_token(api.server, "dr-other"))
    error(*await other.call("GET", path), 404, "consultation_not_found")
    error(*await other.call("POST", path + "/invites", {}), 404, "consultation_not_found")
    # Each practitioner lists only their own consultations.
    status, mine = await api.call("GET", "/api/v1/consultations")
    assert status == 200 and c["consultation_id"] in {
        x["consultation_id"] for x in mine["consultations"]
    }
    status, theirs = await other.call("GET", "/api/v1/consultations")
    assert status == 200 and theirs == {"consultations": []}
    error(*await api.call("GET", "/api/v1/consultations", auth=False), 401, "token_missing")
    error(*await api.call("GET", "/api/v1/consultations?when=today"), 400, "bad_field")
    error(*await api.call("GET", "/api/v1/consultations?room_id=a&room_id=b"), 400, "bad_field")


async def test_the_form_options_say_what_this_node_offers(api: Api) -> None:
    status, options = await api.call("GET", "/api/v1/consultation-options")
    assert status == 200, options
    # E-mail is configured (the test mailbox), eID is not.
    assert options["verification"] == ["email_code", "anonymous"] and options["email"] is True
    assert options["max_participants"] >= 8 and 2 <= options["default_participants"] <= 8
    assert options["time_zone"] == "Europe/Copenhagen"
    error(*await api.call("GET", "/api/v1/consultation-options", auth=False), 401, "token_missing")


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("redeem", {}, 400, "invite_malformed"),
        ("redeem", {"invite": 5}, 400, "invite_malformed"),
        ("redeem", {"invite": "short"}, 400, "invite_malformed"),
        ("redeem", {"invite": v.new_secret(), "x": 1}, 400, "bad_field"),
        ("redeem", {"invite": v.new_secret()}, 404, "invite_not_found"),
        ("redeem", "{oops", 400, "bad_json"),
        ("verify", {"handle": "x", "code": "123456"}, 400, "verification_malformed"),
        ("verify", {"handle": v.new_secret(), "code": "12345"}, 400, "code_malformed"),
        ("verify", {"handle": v.new_secret(), "code": "123456"}, 404, "verification_not_found"),
    ],
)
async def test_bad_client_requests_are_typed(
    api: Api, path: str, body: Any, status: int, code: str
) -> None:
    redeemed = api.server.metric("fortrolig_invites_redeemed_total")
    error(*await api.call("POST", f"/api/v1/invite/{path}", body, auth=False), status, code)
    assert api.server.metric("fortrolig_invites_redeemed_total") == redeemed


async def test_eid_invite_is_unavailable_and_revoked_invites_are_refused(api: Api) -> None:
    c = await api.consultation(verification="eid")
    for _ in range(2):  # not consumed by the refusal
        error(*await api.redeem(secret_of(c["invite"]["url"])), 409, "verification_unavailable")
    a = await api.consultation(verification="anonymous")
    path = f"/api/v1/consultations/{a['consultation_id']}/invites"
    status, newer = await api.call("POST", path, {})
    assert status == 201 and newer["url"] != a["invite"]["url"]
    error(*await api.redeem(secret_of(a["invite"]["url"])), 410, "invite_revoked")
    assert (await api.redeem(secret_of(newer["url"])))[0] == 200


async def test_denied_client_gets_bye_denied_and_cannot_come_back(api: Api) -> None:
    room_id, token = await api.anonymous_client()
    doctor = await practitioner_in(api, room_id)
    client = Participant(api.server.ws_url, token)
    try:
        assert (await client.connect())["type"] == "welcome"
        await client.send({"type": "join"})
        await client.expect("waiting")
        listed = (await doctor.expect("waiting_room"))["clients"]
        assert listed[0]["verification"] == "anonymous"
        assert listed[0]["verified"].startswith("Anonym ") and listed[0]["name"] is None
        await client.send({"type": "chat", "text": "hej", "id": "1"})
        assert (await client.expect("error"))["code"] == "not_admitted"
        await doctor.send({"type": "deny", "participant_id": client.participant_id})
        assert (await client.expect("bye"))["reason"] == "denied"
        assert (await client.expect("closed"))["code"] == 1000
        assert (await doctor.expect("waiting_room"))["clients"] == []
        await media_peers_are(api.server, 1)
        # The resume token from its welcome still says hello, but it cannot queue again.
        again = Participant(api.server.ws_url, client.resume_token or "")
        try:
            assert (await again.connect())["type"] == "welcome"
            await again.send({"type": "join"})
            assert (await again.expect("error"))["code"] == "denied"
            assert (await again.expect("bye"))["reason"] == "denied"
            assert (await again.expect("closed"))["code"] == 1000
        finally:
            await again.close()
    finally:
        await client.close()
        await doctor.close()


def test_session_create_with_verification(node: Server, tmp_path: Path) -> None:
    base = [*FORTROLIG, "session", "create", "--json", "--data-dir", str(node.data_dir)]
    base += ["--base-url", node.base_url]
    out = subprocess.run(
        [*base, "--verification", "anonymous"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["verification"] == "anonymous" and "/invite#" in made["invite_url"]
    assert made["client_url"] == made["invite_url"] and "client_token" not in made
    assert "#role=practitioner&token=" in made["practitioner_url"]
    legacy = node.session()  # --verification none: direct links as before
    assert "#role=client&token=" in legacy["client_url"] and legacy["client_token"]

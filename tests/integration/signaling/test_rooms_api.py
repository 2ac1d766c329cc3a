"""The rooms HTTP API, health and metrics, against a real `fortrolig serve`.

Every refusal is asserted exactly (status and ``{"error": {"code", "message"}}``, docs/protocol.md
"HTTP API") together with what must not have changed: the number of open rooms, the room that
was targeted, and a healthy room whose participants keep talking.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import SigningKey
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import Server

ISSUER = "fortrolig"
OWNER = "dev-practitioner"
WAIT_S = 5.0


def load_server_key(server: Server) -> SigningKey:
    """The node's signing key, read from ``<data_dir>/keys/signing-<kid>.pem``."""
    (path,) = (server.data_dir / "keys").glob("signing-*.pem")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return SigningKey(path.stem.removeprefix("signing-"), key)


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    """The documented error shape: exactly {"error": {"code", "message"}}."""
    assert (status, body["error"]["code"]) == (expected_status, code), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["message"], str)


@dataclass
class Member:
    """A raw WebSocket that said hello and joined a room."""

    ws: aiohttp.ClientWebSocketResponse
    id: str = ""

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def until_closed(self) -> tuple[list[dict[str, Any]], int | None]:
        messages = []
        async with asyncio.timeout(WAIT_S):
            while (msg := await self.ws.receive()).type == aiohttp.WSMsgType.TEXT:
                messages.append(json.loads(msg.data))
        code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
        return messages, code

    async def roundtrip(self) -> None:
        await self.send({"type": "ping"})
        assert await self.recv() == {"type": "pong"}


@dataclass
class Api:
    """The rooms API of one node, as its dev practitioner (or anyone, with ``token=``)."""

    server: Server
    http: aiohttp.ClientSession
    key: SigningKey
    members: list[Member] = field(default_factory=list)

    def access(self, sub: str = OWNER, role: Role = Role.PRACTITIONER, ttl_s: int = 900) -> str:
        issuer = TokenIssuer(self.key, ISSUER, SystemClock())
        return issuer.issue(TokenKind.ACCESS, sub, role, ttl_s=ttl_s)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "owner",
        headers: dict[str, str] | None = None,
        raw: bytes | AsyncIterator[bytes] | None = None,
    ) -> tuple[int, Any]:
        """Status and JSON body (None when empty) of one request (``raw``: the body as is)."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {self.access() if token == 'owner' else token}"
        kwargs: dict[str, Any] = {"headers": hdrs}
        if raw is not None:
            kwargs["data"] = raw
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.server.base_url + path, **kwargs) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def room(self, max_participants: int | None = None) -> str:
        body = {} if max_participants is None else {"max_participants": max_participants}
        status, data = await self.call("POST", "/api/v1/rooms", body)
        assert status == 201, data
        room_id: str = data["room_id"]
        return room_id

    async def join_token(self, room_id: str, role: str = "client", **extra: Any) -> str:
        status, data = await self.call(
            "POST", f"/api/v1/rooms/{room_id}/tokens", {"role": role, **extra}
        )
        assert status == 201, data
        token: str = data["token"]
        return token

    async def participants(self, room_id: str) -> list[dict[str, Any]]:
        status, data = await self.call("GET", f"/api/v1/rooms/{room_id}")
        assert status == 200, data
        people: list[dict[str, Any]] = data["participants"]
        return people

    async def member(self, room_id: str, role: str = "client", **extra: Any) -> Member:
        token = await self.join_token(room_id, role, **extra)
        member = Member(await self.http.ws_connect(self.server.ws_url))
        self.members.append(member)
        await member.send({"type": "hello", "v": 1, "token": token})
        welcome = await member.recv()
        assert welcome["type"] == "welcome", welcome
        member.id = welcome["participant_id"]
        await member.send({"type": "join"})
        assert (await member.recv())["type"] == "joined"
        return member

    async def pair(self) -> tuple[str, Member, Member]:
        room_id = await self.room()
        a = await self.member(room_id, "practitioner")
        b = await self.member(room_id, "client")
        assert (await a.recv())["type"] == "participant_joined"
        return room_id, a, b

    def rooms_open(self) -> float:
        return self.server.metric("fortrolig_rooms")


@dataclass
class Bystanders:
    """A healthy room that refused requests elsewhere must not touch."""

    api: Api
    room_id: str
    a: Member
    b: Member

    async def check(self) -> None:
        assert len(await self.api.participants(self.room_id)) == 2
        await self.a.send({"type": "chat", "text": "alt vel?", "id": "bystander"})
        echo, line = await self.a.recv(), await self.b.recv()
        assert echo == line and (line["from_id"], line["text"]) == (self.a.id, "alt vel?")
        await self.b.roundtrip()


@pytest.fixture(scope="module")
def server_key(server: Server) -> SigningKey:
    return load_server_key(server)


@pytest.fixture
async def api(server: Server, server_key: SigningKey) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        api = Api(server, http, server_key)
        yield api
        for member in api.members:
            await member.ws.close()


@pytest.fixture
async def bystanders(api: Api) -> Bystanders:
    room_id, a, b = await api.pair()
    return Bystanders(api, room_id, a, b)


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic ZGV2OnNlY3JldA==", "Token abc"],
    ids=["absent", "empty", "bearer_only", "bearer_blank", "basic", "other_scheme"],
)
async def test_create_room_without_bearer_token_is_401_token_missing(
    api: Api, bystanders: Bystanders, authorization: str | None
) -> None:
    rooms = api.rooms_open()
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=None, headers=headers)
    assert_error(status, body, 401, "token_missing")
    assert api.rooms_open() == rooms
    await bystanders.check()


async def test_join_token_instead_of_access_token_is_401_token_audience(
    api: Api, bystanders: Bystanders
) -> None:
    room_id = await api.room()
    join_token = await api.join_token(room_id)
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=join_token)
    assert_error(status, body, 401, "token_audience")
    assert api.rooms_open() == rooms
    # The refused API call did not spend the single-use join token.
    member = Member(await api.http.ws_connect(api.server.ws_url))
    api.members.append(member)
    await member.send({"type": "hello", "v": 1, "token": join_token})
    assert (await member.recv())["type"] == "welcome"
    await bystanders.check()


async def test_resume_token_instead_of_access_token_is_401_token_audience(api: Api) -> None:
    issuer = TokenIssuer(api.key, ISSUER, SystemClock())
    resume = issuer.issue(TokenKind.RESUME, "p_x", Role.PRACTITIONER, ttl_s=60, room="room_x")
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=resume)
    assert_error(status, body, 401, "token_audience")


async def test_expired_access_token_is_401_token_expired(api: Api) -> None:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": OWNER,
        "aud": "fortrolig-api",
        "tk": "access",
        "role": "practitioner",
        "iat": now - 2000,
        "exp": now - 1000,
        "jti": "expired-1",
    }
    token = jwt.encode(
        payload, api.key.private_key, algorithm="EdDSA", headers={"kid": api.key.kid}
    )
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=token)
    assert_error(status, body, 401, "token_expired")


async def test_unsigned_access_token_is_401_token_algorithm(api: Api) -> None:
    payload = jwt.decode(api.access(), options={"verify_signature": False})
    token = jwt.encode(payload, None, algorithm="none", headers={"kid": api.key.kid})
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=token)
    assert_error(status, body, 401, "token_algorithm")


async def test_garbage_bearer_token_is_401_token_malformed(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/rooms", {}, token="garbage")
    assert_error(status, body, 401, "token_malformed")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/rooms"),
        ("GET", "/api/v1/rooms/{room}"),
        ("POST", "/api/v1/rooms/{room}/tokens"),
        ("DELETE", "/api/v1/rooms/{room}"),
    ],
    ids=["create", "get", "token", "delete"],
)
async def test_client_role_access_token_is_403_practitioner_only(
    api: Api, bystanders: Bystanders, method: str, path: str
) -> None:
    client = api.access(sub="client-sub", role=Role.CLIENT)
    rooms = api.rooms_open()
    body = {"role": "client"} if path.endswith("tokens") else None
    status, data = await api.call(method, path.format(room=bystanders.room_id), body, token=client)
    assert_error(status, data, 403, "practitioner_only")
    assert api.rooms_open() == rooms
    await bystanders.check()


# --- request bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"[]", b'"room"', b"42", b"\xff\xfe{}"],
    ids=["truncated", "text", "array", "string", "number", "not_utf8"],
)
async def test_create_room_with_bad_json_is_400_bad_json(
    api: Api, bystanders: Bystanders, raw: bytes
) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", raw=raw)
    assert_error(status, body, 400, "bad_json")
    assert api.rooms_open() == rooms
    await bystanders.check()


@pytest.mark.parametrize("size", [1, 9, 0, -2, 1000])
async def test_create_room_with_bad_size_is_400_bad_room_size(
    api: Api, bystanders: Bystanders, size: int
) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {"max_participants": size})
    assert_error(status, body, 400, "bad_room_size")
    assert api.rooms_open() == rooms
    await bystanders.check()


@pytest.mark.parametrize("size", [2, 8])
async def test_create_room_at_the_size_bounds_is_201(api: Api, size: int) -> None:
    status, body = await api.call("POST", "/api/v1/rooms", {"max_participants": size})
    assert status == 201
    assert set(body) == {"room_id", "max_participants", "waiting_room", "regions", "force_relay"}
    assert body["max_participants"] == size
    assert body["regions"] == ["eu-north"]  # the node's region unless the request names others


async def test_create_room_without_body_uses_the_default_size(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/rooms")
    assert (status, body["max_participants"]) == (201, 2)


@pytest.mark.parametrize(
    "body",
    [
        {"max_participants": "3"},
        {"max_participants": 3.0},
        {"max_participants": True},
        {"x": 1},
        {"force_relay": "yes"},
        {"force_relay": 1},
    ],
    ids=["string", "float", "bool", "unknown_field", "force_relay_string", "force_relay_int"],
)
async def test_create_room_with_bad_field_is_400_bad_field(api: Api, body: dict[str, Any]) -> None:
    rooms = api.rooms_open()
    status, data = await api.call("POST", "/api/v1/rooms", body)
    assert_error(status, data, 400, "bad_field")
    assert api.rooms_open() == rooms


async def test_oversize_body_is_413_too_large(api: Api, bystanders: Bystanders) -> None:
    rooms = api.rooms_open()
    raw = json.dumps({"max_participants": 2, "pad": "x" * 20_000}).encode()
    status, body = await api.call("POST", "/api/v1/rooms", raw=raw)
    assert_error(status, body, 413, "too_large")
    assert api.rooms_open() == rooms
    await bystanders.check()


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(0.05)  # each piece arrives on its own: read(n) returns it alone


async def test_a_body_arriving_in_pieces_is_read_whole(api: Api) -> None:
    # Sent chunked (no Content-Length): the reader must not take the first piece for the body.
    status, body = await api.call(
        "POST",
        "/api/v1/rooms",
        raw=_pieces(b'{"max_partici', b'pants": ', b"3}"),
    )
    assert (status, body["max_participants"]) == (201, 3)


async def test_a_chunked_body_over_the_limit_is_413_too_large(api: Api) -> None:
    rooms = api.rooms_open()
    status, body = await api.call(
        "POST",
        "/api/v1/rooms",
        raw=_pieces(b'{"pad": "', b"x" * 10_000, b"x" * 10_000, b'"}'),
    )
    assert_error(status, body, 413, "too_large")
    assert api.rooms_open() == rooms


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"role": 1},
        {"role": "client", "name": 7},
        {"role": "client", "name": "x" * 65},
        {"role": "client", "name": "ø" * 33},  # 33 characters, 66 UTF-8 bytes
        {"role": "client", "name": "\ud800"},  # a lone surrogate (JSON "\ud800")
        {"role": "client", "room": "other"},
    ],
    ids=["role", "role_type", "name_type", "name_chars", "name_bytes", "name_surrogate", "extra"],
)
async def test_join_token_with_bad_field_is_400_bad_field(
    api: Api, bystanders: Bystanders, body: dict[str, Any]
) -> None:
    status, data = await api.call("POST", f"/api/v1/rooms/{bystanders.room_id}/tokens", body)
    assert_error(status, data, 400, "bad_field")
    await bystanders.check()


async def test_join_token_name_of_64_utf8_bytes_reaches_the_room(api: Api) -> None:
    room_id = await api.room()
    name = "Ø" * 32  # 32 characters, 64 UTF-8 bytes
    assert len(name.encode()) == 64
    member = await api.member(room_id, "client", name=name)
    assert [(p["id"], p["name"]) for p in await api.participants(room_id)] == [(member.id, name)]


# --- ownership and unknown rooms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/tokens"), ("DELETE", "")],
    ids=["get", "token", "delete"],
)
async def test_another_practitioners_room_is_403_not_room_owner(
    api: Api, bystanders: Bystanders, method: str, suffix: str
) -> None:
    other = api.access(sub="other-practitioner")
    body = {"role": "client"} if suffix else None
    status, data = await api.call(
        method, f"/api/v1/rooms/{bystanders.room_id}{suffix}", body, token=other
    )
    assert_error(status, data, 403, "not_room_owner")
    await bystanders.check()  # still open, both still inside


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/tokens"), ("DELETE", "")],
    ids=["get", "token", "delete"],
)
async def test_unknown_room_is_404_room_not_found(
    api: Api, bystanders: Bystanders, method: str, suffix: str
) -> None:
    body = {"role": "client"} if suffix else None
    status, data = await api.call(method, f"/api/v1/rooms/room_doesnotexist{suffix}", body)
    assert_error(status, data, 404, "room_not_found")
    await bystanders.check()


async def test_unknown_api_route_and_method_get_json_errors(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("PUT", "/api/v1/rooms", {})
    assert_error(status, body, 405, "method_not_allowed")


# --- ending a room -----------------------------------------------------------------------------


async def test_delete_room_ends_the_session_for_connected_participants(
    api: Api, bystanders: Bystanders
) -> None:
    room_id, a, b = await api.pair()
    rooms = api.rooms_open()
    people = api.server.metric("fortrolig_participants")
    status, body = await api.call("DELETE", f"/api/v1/rooms/{room_id}")
    assert (status, body) == (204, None)
    for member in (a, b):
        messages, code = await member.until_closed()
        assert messages == [{"type": "bye", "reason": "room_ended"}]
        assert code == 1000
    assert api.rooms_open() == rooms - 1
    assert api.server.metric("fortrolig_participants") == people - 2
    # The room is gone for every route; a second DELETE is a 404, not a second ending.
    for method, suffix in (("GET", ""), ("POST", "/tokens"), ("DELETE", "")):
        body = {"role": "client"} if suffix else None
        status, data = await api.call(method, f"/api/v1/rooms/{room_id}{suffix}", body)
        assert_error(status, data, 404, "room_not_found")
    await bystanders.check()


async def test_join_token_of_an_ended_room_is_refused_at_hello(api: Api) -> None:
    room_id = await api.room()
    token = await api.join_token(room_id)
    status, _ = await api.call("DELETE", f"/api/v1/rooms/{room_id}")
    assert status == 204
    member = Member(await api.http.ws_connect(api.server.ws_url))
    api.members.append(member)
    await member.send({"type": "hello", "v": 1, "token": token})
    messages, code = await member.until_closed()
    assert [(m["type"], m["code"], m["ref"]) for m in messages] == [
        ("error", "room_not_found", "hello")
    ]
    assert code == 4403


# --- health and metrics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})],
)
async def test_health_endpoints_answer_200_without_a_token(
    api: Api, path: str, expected: dict[str, str]
) -> None:
    status, body = await api.call("GET", path, token=None)
    assert (status, body) == (200, expected)


async def test_metrics_count_the_ws_errors_triggered(api: Api) -> None:
    codes = (
        "bad_json",
        "hello_expected",
        "not_joined",
        "room_full",
        "token_signature",
        "token_replayed",
        "binary_frame",
        "too_large",
    )
    before = {code: api.server.metric("fortrolig_ws_errors_total", code=code) for code in codes}

    async def fresh() -> Member:
        member = Member(await api.http.ws_connect(api.server.ws_url))
        api.members.append(member)
        return member

    async def welcomed(token: str) -> Member:
        member = await fresh()
        await member.send({"type": "hello", "v": 1, "token": token})
        assert (await member.recv())["type"] == "welcome"
        return member

    room_id, _a, _b = await api.pair()
    # bad_json (protocol error after hello), not_joined (user error), room_full (join refused)
    m = await welcomed(await api.join_token(room_id))
    await m.send({"type": "offer", "sdp": "v=0\r\n"})
    assert (await m.recv())["code"] == "not_joined"
    await m.send({"type": "join"})
    assert (await m.until_closed())[1] == 4403
    m = await welcomed(await api.join_token(room_id))
    await m.ws.send_str("{oops")
    assert (await m.until_closed())[1] == 1002
    # hello_expected, binary_frame, too_large (1009) before any hello
    m = await fresh()
    await m.send({"type": "ping"})
    assert (await m.until_closed())[1] == 1002
    m = await fresh()
    await m.ws.send_bytes(b"\x00")
    assert (await m.until_closed())[1] == 1002
    m = await fresh()
    await m.ws.send_str("x" * 70_000)
    assert (await m.until_closed())[1] == 1009
    # token_signature, token_replayed
    token = await api.join_token(room_id)
    head, payload, sig = token.split(".")
    m = await fresh()
    first = "B" if sig[0] != "B" else "C"  # the first character carries 6 signature bits
    await m.send({"type": "hello", "v": 1, "token": f"{head}.{payload}.{first}{sig[1:]}"})
    assert (await m.until_closed())[1] == 4401
    await welcomed(token)
    m = await fresh()
    await m.send({"type": "hello", "v": 1, "token": token})
    assert (await m.until_closed())[1] == 4401

    after = {code: api.server.metric("fortrolig_ws_errors_total", code=code) for code in codes}
    assert {code: after[code] - before[code] for code in codes} == dict.fromkeys(codes, 1.0)
    async with api.http.get(api.server.base_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert "# TYPE fortrolig_ws_errors_total counter" in text


@pytest.mark.parametrize(
    "regions",
    [["us-east"], [], "eu-north", ["eu-north", 7], ["EU-NORTH"], ["eu-" + "x" * 40]],
)
async def test_regions_outside_the_eu_or_malformed_are_refused(api: Api, regions: object) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {"regions": regions})
    assert_error(status, body, 400, "bad_region")
    assert api.rooms_open() == rooms


async def test_a_room_no_live_node_may_serve_is_refused_with_503(api: Api) -> None:
    # This node is eu-north; nothing serves eu-west, and the room is never moved there.
    status, body = await api.call("POST", "/api/v1/rooms", {"regions": ["eu-west"]})
    assert_error(status, body, 503, "no_node_in_region")
    status, body = await api.call("POST", "/api/v1/rooms", {"regions": ["eu-west", "eu-north"]})
    assert status == 201 and body["regions"] == ["eu-west", "eu-north"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/rooms", {"force_relay": True}),
        ("/api/v1/consultations", {"verification": "anonymous", "force_relay": True}),
    ],
    ids=["room", "consultation"],
)
async def test_force_relay_on_a_node_without_turn_is_409_turn_not_configured(
    api: Api, path: str, body: dict[str, Any]
) -> None:
    # A relay-only browser without a TURN server would gather no candidate at all.
    rooms = api.rooms_open()
    status, data = await api.call("POST", path, body)
    assert_error(status, data, 409, "turn_not_configured")
    assert api.rooms_open() == rooms
    status, data = await api.call("POST", "/api/v1/rooms", {"force_relay": False})
    assert status == 201 and data["force_relay"] is False

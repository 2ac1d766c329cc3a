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
from typing import Any

import jwt
import pytest

from fortrolig.core.clock import SystemClock
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.support.ws_client import (
    ISSUER,
    PRACTITIONER,
    Bystanders,
    NodeClient,
)

OWNER = PRACTITIONER


def assert_error(status: int, body: Any, expected_status: int, code: str) -> None:
    """The documented error shape: exactly {"error": {"code", "message"}}."""
    assert (status, body["error"]["code"]) == (expected_status, code), body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["message"], str)


@pytest.fixture
def api(node: NodeClient) -> NodeClient:
    """The rooms API of the node, as its dev practitioner."""
    return node


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic ZGV2OnNlY3JldA==", "Token abc"],
    ids=["absent", "empty", "bearer_only", "bearer_blank", "basic", "other_scheme"],
)
async def test_create_room_without_bearer_token_is_401_token_missing(
    api: NodeClient, bystanders: Bystanders, authorization: str | None
) -> None:
    rooms = api.rooms_open()
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=None, headers=headers)
    assert_error(status, body, 401, "token_missing")
    assert api.rooms_open() == rooms
    await bystanders.check()


async def test_join_token_instead_of_access_token_is_401_token_audience(
    api: NodeClient, bystanders: Bystanders
) -> None:
    room_id = await api.room()
    join_token = await api.join_token(room_id)
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=join_token)
    assert_error(status, body, 401, "token_audience")
    assert api.rooms_open() == rooms
    # The refused API call did not spend the single-use join token.
    member = await api.open()
    await member.send({"type": "hello", "v": 1, "token": join_token})
    assert (await member.recv())["type"] == "welcome"
    await bystanders.check()


async def test_resume_token_instead_of_access_token_is_401_token_audience(api: NodeClient) -> None:
    issuer = TokenIssuer(api.key, ISSUER, SystemClock())
    resume = issuer.issue(TokenKind.RESUME, "p_x", Role.PRACTITIONER, ttl_s=60, room="room_x")
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=resume)
    assert_error(status, body, 401, "token_audience")


async def test_expired_access_token_is_401_token_expired(api: NodeClient) -> None:
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


async def test_unsigned_access_token_is_401_token_algorithm(api: NodeClient) -> None:
    payload = jwt.decode(api.access(), options={"verify_signature": False})
    token = jwt.encode(payload, None, algorithm="none", headers={"kid": api.key.kid})
    status, body = await api.call("POST", "/api/v1/rooms", {}, token=token)
    assert_error(status, body, 401, "token_algorithm")


async def test_garbage_bearer_token_is_401_token_malformed(api: NodeClient) -> None:
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
    api: NodeClient, bystanders: Bystanders, method: str, path: str
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
    api: NodeClient, bystanders: Bystanders, raw: bytes
) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", raw=raw)
    assert_error(status, body, 400, "bad_json")
    assert api.rooms_open() == rooms
    await bystanders.check()


@pytest.mark.parametrize("size", [1, 9, 0, -2, 1000])
async def test_create_room_with_bad_size_is_400_bad_room_size(
    api: NodeClient, bystanders: Bystanders, size: int
) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {"max_participants": size})
    assert_error(status, body, 400, "bad_room_size")
    assert api.rooms_open() == rooms
    await bystanders.check()


@pytest.mark.parametrize("size", [2, 8])
async def test_create_room_at_the_size_bounds_is_201(api: NodeClient, size: int) -> None:
    status, body = await api.call("POST", "/api/v1/rooms", {"max_participants": size})
    assert status == 201
    assert set(body) == {"room_id", "max_participants", "waiting_room", "regions", "force_relay"}
    assert body["max_participants"] == size
    assert body["regions"] == ["eu-north"]  # the node's region unless the request names others


async def test_create_room_without_body_uses_the_default_size(api: NodeClient) -> None:
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
async def test_create_room_with_bad_field_is_400_bad_field(
    api: NodeClient, body: dict[str, Any]
) -> None:
    rooms = api.rooms_open()
    status, data = await api.call("POST", "/api/v1/rooms", body)
    assert_error(status, data, 400, "bad_field")
    assert api.rooms_open() == rooms


async def test_oversize_body_is_413_too_large(api: NodeClient, bystanders: Bystanders) -> None:
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


async def test_a_body_arriving_in_pieces_is_read_whole(api: NodeClient) -> None:
    # Sent chunked (no Content-Length): the reader must not take the first piece for the body.
    status, body = await api.call(
        "POST",
        "/api/v1/rooms",
        raw=_pieces(b'{"max_partici', b'pants": ', b"3}"),
    )
    assert (status, body["max_participants"]) == (201, 3)


async def test_a_chunked_body_over_the_limit_is_413_too_large(api: NodeClient) -> None:
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
    api: NodeClient, bystanders: Bystanders, body: dict[str, Any]
) -> None:
    status, data = await api.call("POST", f"/api/v1/rooms/{bystanders.room_id}/tokens", body)
    assert_error(status, data, 400, "bad_field")
    await bystanders.check()


async def test_join_token_name_of_64_utf8_bytes_reaches_the_room(api: NodeClient) -> None:
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
    api: NodeClient, bystanders: Bystanders, method: str, suffix: str
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
    api: NodeClient, bystanders: Bystanders, method: str, suffix: str
) -> None:
    body = {"role": "client"} if suffix else None
    status, data = await api.call(method, f"/api/v1/rooms/room_doesnotexist{suffix}", body)
    assert_error(status, data, 404, "room_not_found")
    await bystanders.check()


async def test_unknown_api_route_and_method_get_json_errors(api: NodeClient) -> None:
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert_error(status, body, 404, "not_found")
    status, body = await api.call("PUT", "/api/v1/rooms", {})
    assert_error(status, body, 405, "method_not_allowed")


# --- ending a room -----------------------------------------------------------------------------


async def test_delete_room_ends_the_session_for_connected_participants(
    api: NodeClient, bystanders: Bystanders
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


async def test_join_token_of_an_ended_room_is_refused_at_hello(api: NodeClient) -> None:
    room_id = await api.room()
    token = await api.join_token(room_id)
    status, _ = await api.call("DELETE", f"/api/v1/rooms/{room_id}")
    assert status == 204
    member = await api.open()
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
    api: NodeClient, path: str, expected: dict[str, str]
) -> None:
    status, body = await api.call("GET", path, token=None)
    assert (status, body) == (200, expected)


async def test_metrics_count_the_ws_errors_triggered(api: NodeClient) -> None:
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

    room_id, _a, _b = await api.pair()
    # bad_json (protocol error after hello), not_joined (user error), room_full (join refused)
    m = await api.hello(await api.join_token(room_id))
    await m.send({"type": "offer", "sdp": "v=0\r\n"})
    assert (await m.recv())["code"] == "not_joined"
    await m.send({"type": "join"})
    assert (await m.until_closed())[1] == 4403
    m = await api.hello(await api.join_token(room_id))
    await m.ws.send_str("{oops")
    assert (await m.until_closed())[1] == 1002
    # hello_expected, binary_frame, too_large (1009) before any hello
    m = await api.open()
    await m.send({"type": "ping"})
    assert (await m.until_closed())[1] == 1002
    m = await api.open()
    await m.ws.send_bytes(b"\x00")
    assert (await m.until_closed())[1] == 1002
    m = await api.open()
    await m.ws.send_str("x" * 70_000)
    assert (await m.until_closed())[1] == 1009
    # token_signature, token_replayed
    token = await api.join_token(room_id)
    head, payload, sig = token.split(".")
    m = await api.open()
    first = "B" if sig[0] != "B" else "C"  # the first character carries 6 signature bits
    await m.send({"type": "hello", "v": 1, "token": f"{head}.{payload}.{first}{sig[1:]}"})
    assert (await m.until_closed())[1] == 4401
    await api.hello(token)
    m = await api.open()
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
async def test_regions_outside_the_eu_or_malformed_are_refused(
    api: NodeClient, regions: object
) -> None:
    rooms = api.rooms_open()
    status, body = await api.call("POST", "/api/v1/rooms", {"regions": regions})
    assert_error(status, body, 400, "bad_region")
    assert api.rooms_open() == rooms


async def test_a_room_no_live_node_may_serve_is_refused_with_503(api: NodeClient) -> None:
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
    api: NodeClient, path: str, body: dict[str, Any]
) -> None:
    # A relay-only browser without a TURN server would gather no candidate at all.
    rooms = api.rooms_open()
    status, data = await api.call("POST", path, body)
    assert_error(status, data, 409, "turn_not_configured")
    assert api.rooms_open() == rooms
    status, data = await api.call("POST", "/api/v1/rooms", {"force_relay": False})
    assert status == 201 and data["force_relay"] is False

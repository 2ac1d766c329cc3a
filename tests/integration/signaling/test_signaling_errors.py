"""Bad input on the signaling WebSocket, against a real `fortrolig serve`.

Every class of bad input gets its own test asserting the exact typed outcome of
docs/protocol.md ("Errors"): an ``error`` with its stable code while the connection stays usable,
or the exact close code. Each test also checks that nothing else was affected: a second, healthy
room (``bystanders``) still has both participants, relays chat and answers pings, and nothing
leaks to it; where the bad input came from a room member, that room's participant count (GET
/api/v1/rooms/{id}) and its other member are checked too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from cryptography.hazmat.primitives import serialization

from fortrolig.core.clock import SystemClock
from fortrolig.core.config import SignalingConfig
from fortrolig.core.keys import SigningKey
from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from fortrolig.signaling.ws import RATE_STRIKES
from tests.conftest import Server, start_server, stop_server
from tests.support.ws_client import (
    ISSUER,
    PRACTITIONER,
    Bystanders,
    NodeClient,
    load_server_key,
)

LIMITS = SignalingConfig()  # the server runs on these defaults
# --- helpers ---------------------------------------------------------------------------------


def shape(msg: dict[str, Any]) -> tuple[Any, ...]:
    """A server message without its human-readable parts: ("error", code, ref), ("bye", reason)."""
    if msg["type"] == "error":
        assert set(msg) == {"type", "code", "message", "ref"}, msg
        assert isinstance(msg["message"], str) and len(msg["message"].encode()) <= 1024
        return ("error", msg["code"], msg["ref"])
    if msg["type"] == "bye":
        assert set(msg) == {"type", "reason"}, msg
        return ("bye", msg["reason"])
    return (msg["type"],)


# --- handshake -------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["ping", "join", "leave"])
async def test_message_before_hello_closes_1002_hello_expected(
    node: NodeClient, bystanders: Bystanders, first: str
) -> None:
    conn = await node.open()
    await conn.send({"type": first})
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", "hello_expected", first)]
    assert code == 1002
    await bystanders.check()


async def test_hello_with_unsupported_version_closes_1002(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id = await node.room()
    token = await node.join_token(room_id)
    conn = await node.open()
    await conn.send({"type": "hello", "v": 2, "token": token})
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", "unsupported_version", "hello")]
    assert code == 1002
    # The refused hello did not spend the join token.
    await node.hello(token)
    await bystanders.check()


async def test_hello_with_version_as_string_closes_1002_bad_field(
    node: NodeClient, bystanders: Bystanders
) -> None:
    conn = await node.open()
    await conn.send({"type": "hello", "v": "1", "token": "x.y.z"})
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", "bad_field", "hello")]
    assert code == 1002
    await bystanders.check()


async def test_non_json_before_hello_closes_1002_bad_json(
    node: NodeClient, bystanders: Bystanders
) -> None:
    conn = await node.open()
    await conn.send("hello?")
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", "bad_json", "hello")]
    assert code == 1002
    await bystanders.check()


async def test_binary_frame_before_hello_closes_1002(
    node: NodeClient, bystanders: Bystanders
) -> None:
    conn = await node.open()
    await conn.send(b'{"type":"hello","v":1,"token":"x"}')
    messages, code = await conn.until_closed()
    assert (messages, code) == ([], 1002)
    await bystanders.check()


async def test_second_hello_is_refused_and_connection_stays_usable(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id = await node.room()
    conn = await node.hello(await node.join_token(room_id))
    await conn.send({"type": "hello", "v": 1, "token": await node.join_token(room_id)})
    # Not in the docs' user error table; the server's stable code for it.
    assert shape(await conn.recv()) == ("error", "already_authenticated", "hello")
    await conn.roundtrip()
    await conn.send({"type": "join"})
    assert (await conn.recv())["type"] == "joined"
    assert await node.count(room_id) == 1
    await bystanders.check()


# --- handshake deadline (a node of its own with handshake_timeout_s = 1) ---------------------


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("quick"),
        extra_env={"FORTROLIG_SIGNALING__HANDSHAKE_TIMEOUT_S": "1"},
    )
    yield srv
    stop_server(srv)


@pytest.fixture
async def quick_node(quick_server: Server) -> AsyncIterator[NodeClient]:
    async with aiohttp.ClientSession() as http:
        node = NodeClient(quick_server, http, load_server_key(quick_server))
        yield node
        await node.close()


async def test_no_hello_within_deadline_closes_4408(quick_node: NodeClient) -> None:
    room_id, a, b = await quick_node.pair()  # healthy sessions on the same node
    conn = await quick_node.open()
    start = time.monotonic()
    messages, code = await conn.until_closed(within=5)
    elapsed = time.monotonic() - start
    assert (messages, code) == ([], 4408)
    assert 0.8 <= elapsed < 3.0
    # Sessions that said hello in time are not subject to the deadline.
    await a.roundtrip()
    await b.roundtrip()
    assert await quick_node.count(room_id) == 2


async def test_websocket_pings_do_not_extend_the_hello_deadline(quick_node: NodeClient) -> None:
    conn = await quick_node.open()

    async def keep_pinging() -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not conn.ws.closed:
                await conn.ws.ping()
                await asyncio.sleep(0.2)

    pinger = asyncio.get_running_loop().create_task(keep_pinging())
    start = time.monotonic()
    try:
        messages, code = await conn.until_closed(within=5)
    finally:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
    assert (messages, code) == ([], 4408)
    assert time.monotonic() - start < 3.0


# --- token failures at hello: `error` with the token code, then close 4401 --------------------


def claims(room_id: str, **changes: Any) -> dict[str, Any]:
    """A valid join-token payload for ``room_id``, with changes (None removes a claim)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "sub_forged",
        "aud": "fortrolig-join",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_hex(16),
        "tk": "join",
        "role": "client",
        "room": room_id,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def signed(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    """An EdDSA JWT; ``header`` adds to (or, with None, removes from) alg/typ/kid."""
    headers = {"kid": key.kid, **header}
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The key-confusion attack: HS256 with the server's public key (PEM) as the HMAC secret."""
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper_signature(token: str) -> str:
    head, body, sig = token.split(".")
    first = "B" if sig[0] != "B" else "C"  # the first character carries 6 signature bits
    return f"{head}.{body}.{first}{sig[1:]}"


def tamper_payload(token: str) -> str:
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["role"] = "practitioner"
    return f"{head}.{b64url(json.dumps(payload).encode())}.{sig}"


Forger = Callable[[SigningKey, str], str]
TOKEN_FAILURES: dict[str, tuple[Forger, str]] = {
    "alg_none": (
        lambda k, r: jwt.encode(claims(r), None, algorithm="none", headers={"kid": k.kid}),
        "token_algorithm",
    ),
    "hs256_signed_with_public_key": (
        lambda k, r: hs256_with_public_key(k, claims(r)),
        "token_algorithm",
    ),
    "unknown_kid": (lambda k, r: signed(SigningKey.generate(), claims(r)), "token_key_unknown"),
    "no_kid": (
        lambda k, r: jwt.encode(claims(r), k.private_key, algorithm="EdDSA"),
        "token_key_unknown",
    ),
    "server_kid_other_key": (
        lambda k, r: jwt.encode(
            claims(r), SigningKey.generate().private_key, algorithm="EdDSA", headers={"kid": k.kid}
        ),
        "token_signature",
    ),
    "crit_header": (lambda k, r: signed(k, claims(r), crit=["exp"]), "token_header_forbidden"),
    "jku_header": (
        lambda k, r: signed(k, claims(r), jku="https://evil.example/jwks.json"),
        "token_header_forbidden",
    ),
    "jwk_header": (
        lambda k, r: signed(k, claims(r), jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        "token_header_forbidden",
    ),
    "x5u_header": (
        lambda k, r: signed(k, claims(r), x5u="https://evil.example/cert.pem"),
        "token_header_forbidden",
    ),
    "typ_not_jwt": (lambda k, r: signed(k, claims(r), typ="at+jwt"), "token_malformed"),
    "expired": (
        lambda k, r: signed(k, claims(r, iat=int(time.time()) - 900, exp=int(time.time()) - 300)),
        "token_expired",
    ),
    "iat_in_future": (
        lambda k, r: signed(k, claims(r, iat=int(time.time()) + 600, exp=int(time.time()) + 900)),
        "token_not_yet_valid",
    ),
    "nbf_in_future": (
        lambda k, r: signed(k, claims(r, nbf=int(time.time()) + 600)),
        "token_not_yet_valid",
    ),
    "access_token": (
        lambda k, r: TokenIssuer(k, ISSUER, SystemClock()).issue(
            TokenKind.ACCESS, PRACTITIONER, Role.PRACTITIONER, ttl_s=900
        ),
        "token_audience",
    ),
    "foreign_audience": (lambda k, r: signed(k, claims(r, aud="someone-else")), "token_audience"),
    "kind_mismatches_audience": (lambda k, r: signed(k, claims(r, tk="access")), "token_claims"),
    "missing_jti": (lambda k, r: signed(k, claims(r, jti=None)), "token_claims"),
    "wrong_issuer": (lambda k, r: signed(k, claims(r, iss="not-fortrolig")), "token_issuer"),
    "tampered_signature": (lambda k, r: tamper_signature(signed(k, claims(r))), "token_signature"),
    "tampered_payload": (lambda k, r: tamper_payload(signed(k, claims(r))), "token_signature"),
    "garbage": (lambda k, r: "garbage", "token_malformed"),
    "garbage_three_parts": (lambda k, r: "not.a.jwt", "token_malformed"),
}


@pytest.mark.parametrize("case", sorted(TOKEN_FAILURES))
async def test_bad_token_at_hello_gets_its_code_then_4401(
    node: NodeClient, bystanders: Bystanders, case: str
) -> None:
    forge, expected = TOKEN_FAILURES[case]
    room_id = await node.room()
    conn = await node.open()
    await conn.send({"type": "hello", "v": 1, "token": forge(node.key, room_id)})
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", expected, "hello")]
    assert code == 4401
    assert await node.count(room_id) == 0
    # The room itself is fine: a real token still gets in.
    await node.member(room_id)
    await bystanders.check()


async def test_forged_token_with_server_key_is_accepted(node: NodeClient) -> None:
    """Control for the table above: the same forging path with nothing wrong is welcomed."""
    room_id = await node.room()
    conn = await node.hello(signed(node.key, claims(room_id)))
    assert (conn.welcome["room_id"], conn.welcome["role"]) == (room_id, "client")


async def test_join_token_is_single_use(node: NodeClient, bystanders: Bystanders) -> None:
    room_id = await node.room()
    token = await node.join_token(room_id)
    first = await node.hello(token)
    second = await node.open()
    await second.send({"type": "hello", "v": 1, "token": token})
    messages, code = await second.until_closed()
    assert [shape(m) for m in messages] == [("error", "token_replayed", "hello")]
    assert code == 4401
    # The first holder of the token is unaffected.
    await first.roundtrip()
    await first.send({"type": "join"})
    assert (await first.recv())["type"] == "joined"
    assert await node.count(room_id) == 1
    await bystanders.check()


# --- room admission --------------------------------------------------------------------------


async def test_join_full_room_gets_room_full_then_4403(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id, a, b = await node.pair(max_participants=2)
    third = await node.hello(await node.join_token(room_id))
    await third.send({"type": "join", "name": "Tredje"})
    messages, code = await third.until_closed()
    assert [shape(m) for m in messages] == [("error", "room_full", "join")]
    assert code == 4403
    # The two inside heard nothing about it and still talk.
    await a.roundtrip()
    await b.roundtrip()
    await b.send({"type": "chat", "text": "hej", "id": "c1"})
    assert (await a.recv())["from_id"] == b.id
    assert (await b.recv())["from_id"] == b.id
    assert await node.count(room_id) == 2
    await bystanders.check()


async def test_join_after_room_ended_gets_room_closed_bye_and_1000(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id = await node.room()
    conn = await node.hello(await node.join_token(room_id))  # welcomed, not joined yet
    await node.delete(room_id)
    await conn.send({"type": "join"})
    messages, code = await conn.until_closed()
    assert [shape(m) for m in messages] == [("error", "room_closed", "join"), ("bye", "room_ended")]
    assert code == 1000
    await bystanders.check()


# --- out of order: user errors, the connection stays open -------------------------------------


BEFORE_JOIN = {
    "offer": {"type": "offer", "sdp": "v=0\r\n"},
    "answer": {"type": "answer", "sdp": "v=0\r\n"},
    "candidate": {"type": "candidate", "candidate": "", "sdpMid": None, "sdpMLineIndex": None},
    "chat": {"type": "chat", "text": "hallo?", "id": "c1"},
    "media_state": {"type": "media_state", "audio": False, "video": True},
}


@pytest.mark.parametrize("kind", sorted(BEFORE_JOIN))
async def test_message_before_join_gets_not_joined(
    node: NodeClient, bystanders: Bystanders, kind: str
) -> None:
    room_id, a, _b = await node.pair(max_participants=3)
    conn = await node.hello(await node.join_token(room_id))
    await conn.send(BEFORE_JOIN[kind])
    assert shape(await conn.recv()) == ("error", "not_joined", kind)
    await conn.roundtrip()
    assert await node.count(room_id) == 2
    # A subsequent valid join works, and only then do the others hear of it.
    await conn.send({"type": "join"})
    assert (await conn.recv())["type"] == "joined"
    assert (await a.recv())["participant"]["id"] == conn.id
    assert await node.count(room_id) == 3
    await bystanders.check()


async def test_join_twice_gets_already_joined(node: NodeClient, bystanders: Bystanders) -> None:
    room_id, a, b = await node.pair()
    await b.send({"type": "join", "name": "igen"})
    assert shape(await b.recv()) == ("error", "already_joined", "join")
    await b.roundtrip()
    await a.roundtrip()  # no second participant_joined
    assert await node.count(room_id) == 2
    await bystanders.check()


async def test_answer_without_pending_offer_gets_no_pending_offer(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id, a, b = await node.pair()
    await b.send({"type": "answer", "sdp": "v=0\r\n"})
    assert shape(await b.recv()) == ("error", "no_pending_offer", "answer")
    await b.roundtrip()
    await a.roundtrip()
    assert await node.count(room_id) == 2
    await bystanders.check()


async def test_malformed_candidate_gets_bad_candidate(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id, a, b = await node.pair()
    await b.send({"type": "candidate", "candidate": "candidate:nonsense", "sdpMid": "0"})
    # Not in the docs' user error table (see the report); the media layer's stable code.
    assert shape(await b.recv()) == ("error", "bad_candidate", "candidate")
    await b.roundtrip()
    await a.roundtrip()
    assert await node.count(room_id) == 2
    await bystanders.check()


# --- protocol errors after join: `error` with the parse code, then close 1002 ------------------


def exact_size_chat(size: int) -> str:
    """A chat message frame of exactly ``size`` bytes."""
    head, tail = '{"type":"chat","id":"big","text":"', '"}'
    return head + "a" * (size - len(head) - len(tail)) + tail


PROTOCOL_ERRORS: dict[str, tuple[str, str]] = {
    "not_json": ("this is not JSON", "bad_json"),
    "truncated_json": ('{"type":"ping"', "bad_json"),
    "json_array": ('[{"type":"ping"}]', "bad_json"),
    "json_string": ('"ping"', "bad_json"),
    "json_number": ("42", "bad_json"),
    "nan": ('{"type":"media_state","audio":NaN,"video":true}', "bad_json"),
    "duplicate_keys": ('{"type":"chat","text":"a","text":"b","id":"c"}', "bad_json"),
    "missing_type": ('{"text":"hej","id":"c"}', "bad_type"),
    "type_not_string": ('{"type":["ping"]}', "bad_type"),
    "unknown_type": ('{"type":"shout"}', "unknown_type"),
    "server_message_type": ('{"type":"welcome"}', "unknown_type"),
    "chat_text_is_number": ('{"type":"chat","text":5,"id":"c"}', "bad_field"),
    "media_state_string_bool": ('{"type":"media_state","audio":"yes","video":true}', "bad_field"),
    "media_state_int_bool": ('{"type":"media_state","audio":1,"video":true}', "bad_field"),
    "candidate_index_out_of_range": (
        '{"type":"candidate","candidate":"","sdpMid":"0","sdpMLineIndex":1024}',
        "bad_field",
    ),
    "offer_sdp_null": ('{"type":"offer","sdp":null}', "bad_field"),
    "missing_field": ('{"type":"chat","text":"hej"}', "bad_field"),
    "unknown_extra_field": ('{"type":"ping","extra":true}', "bad_field"),
    "unknown_field_on_chat": ('{"type":"chat","text":"hej","id":"c","to":"x"}', "bad_field"),
    "lone_surrogate": ('{"type":"chat","text":"\\ud800","id":"c"}', "bad_field"),
    "join_name_too_long": (json.dumps({"type": "join", "name": "ø" * 33}), "bad_field"),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_ERRORS))
async def test_protocol_error_after_join_gets_parse_code_then_1002(
    node: NodeClient, bystanders: Bystanders, case: str
) -> None:
    raw, expected = PROTOCOL_ERRORS[case]
    room_id, a, b = await node.pair()
    await b.send(raw)
    messages, code = await b.until_closed()
    assert [shape(m) for m in messages] == [("error", expected, None)]
    assert code == 1002
    # The other member is told the victim left, and stays usable.
    left = await a.recv()
    assert (left["type"], left["participant_id"]) == ("participant_left", b.id)
    await a.roundtrip()
    assert await node.count(room_id) == 1
    await bystanders.check()


async def test_binary_frame_after_join_closes_1002(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id, a, b = await node.pair()
    await b.send(b'{"type":"ping"}')
    messages, code = await b.until_closed()
    assert (messages, code) == ([], 1002)
    assert (await a.recv())["participant_id"] == b.id
    assert await node.count(room_id) == 1
    await bystanders.check()


async def test_oversize_message_closes_1009(node: NodeClient, bystanders: Bystanders) -> None:
    room_id, a, b = await node.pair()
    assert b.welcome["limits"]["max_message_bytes"] == LIMITS.max_message_bytes == 65536
    await b.send(exact_size_chat(LIMITS.max_message_bytes + 1))
    messages, code = await b.until_closed()
    assert (messages, code) == ([], 1009)
    assert (await a.recv())["participant_id"] == b.id
    assert await node.count(room_id) == 1
    await bystanders.check()


async def test_message_of_exactly_max_message_bytes_is_accepted(
    node: NodeClient, bystanders: Bystanders
) -> None:
    """The size limit is inclusive: a 65 536-byte frame is read (its chat text is then too long)."""
    room_id, a, b = await node.pair()
    await b.send(exact_size_chat(LIMITS.max_message_bytes))
    assert shape(await b.recv()) == ("error", "chat_too_long", "chat")
    await b.roundtrip()
    await a.roundtrip()
    assert await node.count(room_id) == 2
    await bystanders.check()


# --- chat --------------------------------------------------------------------------------------


async def test_valid_chat_reaches_the_other_with_from_id_and_echoes_to_sender(
    node: NodeClient, bystanders: Bystanders
) -> None:
    _room_id, a, b = await node.pair()
    text = "Hej, kan du høre mig? 👋\nlinje to\tmed tab"
    before = int(time.time() * 1000)
    await b.send({"type": "chat", "text": text, "id": "c-17"})
    echo, line = await b.recv(), await a.recv()
    assert echo == line
    assert set(line) == {"type", "id", "from_id", "text", "ts"}
    assert (line["type"], line["id"], line["from_id"], line["text"]) == ("chat", "c-17", b.id, text)
    assert before - 1000 <= line["ts"] <= int(time.time() * 1000) + 1000
    await bystanders.check()


@pytest.mark.parametrize(
    "text", ["a" * LIMITS.chat_max_bytes, "ø" * (LIMITS.chat_max_bytes // 2)], ids=["ascii", "utf8"]
)
async def test_chat_of_exactly_chat_max_bytes_is_delivered(node: NodeClient, text: str) -> None:
    _room_id, a, b = await node.pair()
    await b.send({"type": "chat", "text": text, "id": "max"})
    assert (await b.recv())["text"] == (await a.recv())["text"] == text


@pytest.mark.parametrize(
    "text",
    ["a" * (LIMITS.chat_max_bytes + 1), "ø" * (LIMITS.chat_max_bytes // 2 + 1)],
    ids=["ascii", "utf8_bytes_not_chars"],
)
async def test_chat_over_chat_max_bytes_gets_chat_too_long(
    node: NodeClient, bystanders: Bystanders, text: str
) -> None:
    room_id, a, b = await node.pair()
    await b.send({"type": "chat", "text": text, "id": "long"})
    assert shape(await b.recv()) == ("error", "chat_too_long", "chat")
    await b.roundtrip()
    await a.roundtrip()  # nothing was relayed
    assert await node.count(room_id) == 2
    await bystanders.check()


INVALID_CHAT = {
    "empty": "",
    "blank": "   ",
    "only_newlines_and_tabs": "\n\t\n",
    "nul": "hej\x00",
    "bell": "ding\x07",
    "ansi_escape": "\x1b[31mrød\x1b[0m",
    "carriage_return": "overwrite\rme",
    "delete": "del\x7f",
    "c1_control": "next\x85line",
}


@pytest.mark.parametrize("case", sorted(INVALID_CHAT))
async def test_invalid_chat_text_gets_chat_invalid(
    node: NodeClient, bystanders: Bystanders, case: str
) -> None:
    room_id, a, b = await node.pair()
    await b.send({"type": "chat", "text": INVALID_CHAT[case], "id": "bad"})
    assert shape(await b.recv()) == ("error", "chat_invalid", "chat")
    await b.roundtrip()
    await a.roundtrip()
    # A subsequent valid chat still goes through.
    await b.send({"type": "chat", "text": "ok", "id": "good"})
    assert (await a.recv())["text"] == (await b.recv())["text"] == "ok"
    assert await node.count(room_id) == 2
    await bystanders.check()


@pytest.mark.parametrize("size", [2, 8])
async def test_chat_flood_gets_rate_limited(
    node: NodeClient, bystanders: Bystanders, size: int
) -> None:
    room_id, a, b = await node.pair(max_participants=size)
    # The burst leaves room for the keys a page sends each other participant (10 + 3 per peer).
    burst = LIMITS.chat_burst + 3 * (size - 1)
    sent = burst + 5
    for i in range(sent):
        await b.send({"type": "chat", "text": f"spam {i}", "id": f"s{i}"})
    replies = [await b.recv() for _ in range(sent)]
    relayed = [m for m in replies if m["type"] == "chat"]
    refused = [shape(m) for m in replies if m["type"] == "error"]
    assert len(relayed) + len(refused) == sent
    assert [m["id"] for m in replies[:burst]] == [f"s{i}" for i in range(burst)]
    assert refused and set(refused) == {("error", "rate_limited", "chat")}
    # The other side got exactly the relayed lines, in order.
    assert [(await a.recv())["id"] for _ in relayed] == [m["id"] for m in relayed]
    await a.roundtrip()
    # Still connected; after a pause the chat budget refills.
    await b.roundtrip()
    await asyncio.sleep(1.5 / LIMITS.chat_rate_per_s)
    await b.send({"type": "chat", "text": "sorry", "id": "after"})
    assert (await a.recv())["id"] == (await b.recv())["id"] == "after"
    assert await node.count(room_id) == 2
    await bystanders.check()


# --- message flood -----------------------------------------------------------------------------


async def test_message_flood_gets_rate_limited_then_1008(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id, a, b = await node.pair()
    assert RATE_STRIKES == 20
    with contextlib.suppress(ConnectionError):
        for _ in range(LIMITS.rate_burst + RATE_STRIKES + 10):
            await b.send({"type": "ping"})
    messages, code = await b.until_closed()
    shapes = [shape(m) for m in messages]
    allowed = LIMITS.rate_burst - 1  # the join took one message from the burst
    assert shapes[:allowed] == [("pong",)] * allowed
    assert shapes.count(("error", "rate_limited", None)) == RATE_STRIKES
    assert set(shapes) == {("pong",), ("error", "rate_limited", None)}
    assert shapes[-1] == ("error", "rate_limited", None)
    assert code == 1008
    assert (await a.recv())["participant_id"] == b.id
    await a.roundtrip()
    assert await node.count(room_id) == 1
    await bystanders.check()


# --- SDP (real media) --------------------------------------------------------------------------


async def _offer_without_fingerprint() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no default public STUN server
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
    finally:
        await pc.close()
    lines = [x for x in sdp.split("\r\n") if not x.startswith("a=fingerprint:")]
    return "\r\n".join(lines)


async def test_malformed_sdp_offer_gets_bad_sdp_and_a_valid_publish_still_works(
    node: NodeClient, bystanders: Bystanders
) -> None:
    room_id = await node.room()
    participant = Participant(
        node.server.ws_url,
        await node.join_token(room_id, "practitioner"),
        tracks=[PatternVideoTrack(200, 50, 50, 160, 120, 15), ToneAudioTrack()],
    )
    try:
        welcome = await participant.connect()
        assert welcome["type"] == "welcome"
        assert (await participant.join())["type"] == "joined"
        for bad in ("this is not an SDP", "v=0\r\n", await _offer_without_fingerprint()):
            await participant.send({"type": "offer", "sdp": bad})
            error = await participant.expect("error", "answer", "pong")
            assert shape(error) == ("error", "bad_sdp", "offer")
            await participant.send({"type": "ping"})
            assert await participant.expect("pong", "error", "answer") == {"type": "pong"}
        await participant.publish(welcome)  # raises if the offer is refused
        assert participant.pc is not None
        assert participant.pc.remoteDescription.type == "answer"
        # The client never re-offers: a second publish offer is refused, the session goes on.
        await participant.send({"type": "offer", "sdp": participant.pc.localDescription.sdp})
        error = await participant.expect("error", "answer", "pong")
        assert shape(error) == ("error", "already_joined", "offer")
        await participant.send({"type": "ping"})
        assert await participant.expect("pong", "error", "answer") == {"type": "pong"}
        assert await node.count(room_id) == 1
    finally:
        await participant.close()
    await bystanders.check()

"""One WebSocket and HTTP test client for the signaling protocol of a running node.

``WsClient`` is a raw /ws connection that can send anything (JSON, text, bytes) and reads the
server's messages and close code; ``NodeClient`` makes rooms and join tokens over the rooms API
as the node's dev practitioner (with the node's own signing key, read from its data dir, so a
test can also forge tokens) and opens connections that said hello or joined. ``Bystanders`` is a
healthy room that refused input elsewhere must leave untouched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import SigningKey
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import Server

ISSUER = "fortrolig"
PRACTITIONER = "dev-practitioner"  # the embedded node's dev practitioner
WAIT_S = 5.0  # for any one server message
WS_CLOSE = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


def load_server_key(server: Server) -> SigningKey:
    """The node's signing key, read from ``<data_dir>/keys/signing-<kid>.pem``."""
    (path,) = (server.data_dir / "keys").glob("signing-*.pem")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return SigningKey(path.stem.removeprefix("signing-"), key)


class WsClient:
    """A raw WebSocket to /ws: sends anything, reads JSON messages and the close code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.id = ""
        self.welcome: dict[str, Any] = {}

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        elif isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_str(json.dumps(message))

    async def recv(self) -> dict[str, Any]:
        """The next message; fails on a close or a non-text frame."""
        msg = await self.ws.receive(timeout=WAIT_S)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def until_closed(self, within: float = WAIT_S) -> tuple[list[dict[str, Any]], int | None]:
        """Every message up to the server's close frame, and the close code."""
        messages: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                messages.append(json.loads(msg.data))
        assert msg.type in WS_CLOSE, (msg.type, msg.data)
        code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
        return messages, code

    async def roundtrip(self) -> None:
        """The connection still works and nothing else is queued: ping is answered by pong."""
        await self.send({"type": "ping"})
        assert await self.recv() == {"type": "pong"}


@dataclass
class NodeClient:
    """HTTP and WebSocket access to one node as its dev practitioner, with the node's signing
    key for forging tokens. Every connection it opened is closed by :meth:`close`."""

    server: Server
    http: aiohttp.ClientSession
    key: SigningKey
    conns: list[WsClient] = field(default_factory=list)

    @property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.key, ISSUER, SystemClock())

    def access(
        self, sub: str = PRACTITIONER, role: Role = Role.PRACTITIONER, ttl_s: int = 900
    ) -> str:
        """An access token of the node's issuer (the dev practitioner's by default)."""
        return self.issuer.issue(TokenKind.ACCESS, sub, role, ttl_s=ttl_s)

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
        """Status and JSON body (None when empty) of one request: as the dev practitioner
        (``token="owner"``), with another token, or none; ``raw``: the body as is."""
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
        body = {"role": role, **extra}
        status, data = await self.call("POST", f"/api/v1/rooms/{room_id}/tokens", body)
        assert status == 201, data
        token: str = data["token"]
        return token

    async def participants(self, room_id: str) -> list[dict[str, Any]]:
        """The room's participants, from GET /api/v1/rooms/{id}."""
        status, data = await self.call("GET", f"/api/v1/rooms/{room_id}")
        assert status == 200, data
        people: list[dict[str, Any]] = data["participants"]
        return people

    async def count(self, room_id: str) -> int:
        return len(await self.participants(room_id))

    async def delete(self, room_id: str) -> None:
        status, data = await self.call("DELETE", f"/api/v1/rooms/{room_id}")
        assert status == 204, data

    def rooms_open(self) -> float:
        return self.server.metric("fortrolig_rooms")

    async def open(self) -> WsClient:
        """A fresh connection to /ws that has said nothing yet."""
        conn = WsClient(await self.http.ws_connect(self.server.ws_url))
        self.conns.append(conn)
        return conn

    async def hello(self, token: str) -> WsClient:
        """A connection that said hello and got its welcome."""
        conn = await self.open()
        await conn.send({"type": "hello", "v": 1, "token": token})
        welcome = await conn.recv()
        assert welcome["type"] == "welcome", welcome
        conn.welcome, conn.id = welcome, welcome["participant_id"]
        return conn

    async def member(self, room_id: str, role: str = "client", **extra: Any) -> WsClient:
        """A connection that joined ``room_id`` (``extra``: more fields of its join token)."""
        conn = await self.hello(await self.join_token(room_id, role, **extra))
        await conn.send({"type": "join"})
        joined = await conn.recv()
        assert joined["type"] == "joined", joined
        return conn

    async def pair(self, max_participants: int | None = None) -> tuple[str, WsClient, WsClient]:
        """A room with a practitioner and a client joined (and told about each other)."""
        room_id = await self.room(max_participants)
        a = await self.member(room_id, "practitioner")
        b = await self.member(room_id, "client")
        assert (await a.recv())["type"] == "participant_joined"
        return room_id, a, b

    async def close(self) -> None:
        for conn in self.conns:
            await conn.ws.close()


@dataclass
class Bystanders:
    """A second, healthy room that bad input elsewhere must not touch."""

    node: NodeClient
    room_id: str
    a: WsClient
    b: WsClient

    @classmethod
    async def of(cls, node: NodeClient) -> Bystanders:
        room_id, a, b = await node.pair()
        return cls(node, room_id, a, b)

    async def check(self) -> None:
        """Both still in the room, chat still relayed, nothing else queued on either side."""
        assert await self.node.count(self.room_id) == 2
        await self.a.send({"type": "chat", "text": "still here?", "id": "bystander"})
        echo, line = await self.a.recv(), await self.b.recv()
        assert echo == line
        assert (line["type"], line["from_id"], line["text"]) == ("chat", self.a.id, "still here?")
        await self.b.roundtrip()
        await self.a.roundtrip()

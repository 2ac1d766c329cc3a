"""The node's HTTP edge against a real `fortrolig serve` on loopback (issue 18, items 1-3):
nested bodies, slow senders, connection and WebSocket caps, security headers, /metrics access,
invalid UTF-8 frames. Client source addresses vary over 127.0.0.0/8 (trusted proxies off), so
each test's per-address counters are its own."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.accounts.billing import SIGNATURE_HEADER, sign
from fortrolig.app.edge import security_headers_on_prepare
from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from fortrolig.signaling.http import error_middleware
from tests.conftest import Server, free_port, start_server, stop_server

BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 2.0
PER_ADDRESS = 6
WEBSOCKETS = 3
WAIT_S = 15.0  # bound of every wait on the node
NESTED = b'{"a":' + b"[" * 8000 + b"]" * 8000 + b"}"  # under 16 KiB
WEBHOOK_SECRET = b"w" * 40
METRICS_SECRET = "m" * 40
# Every route that takes a JSON body (ids need not exist: the body is refused before routing
# decides anything).
JSON_ROUTES = [
    "/api/v1/rooms",
    "/api/v1/rooms/room-x/tokens",
    "/api/v1/consultations",
    "/api/v1/consultations/cons-x/invites",
    "/api/v1/invite/redeem",
    "/api/v1/invite/verify",
    "/api/journal/clients",
    "/api/journal/clients/cl-x/notes",
    "/api/journal/clients/cl-x/notes/n-x/addenda",
    "/auth/signup",
    "/auth/totp/enrol",
    "/auth/totp/confirm",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
    "/auth/password",
]


def private_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    """A node with short deadlines, small caps, a webhook secret and both metrics guards."""
    tmp = tmp_path_factory.mktemp("edge")
    metrics_port = free_port()
    env = {
        "FORTROLIG_EDGE__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "FORTROLIG_EDGE__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FORTROLIG_EDGE__MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "FORTROLIG_EDGE__MAX_WEBSOCKETS_PER_ADDRESS": str(WEBSOCKETS),
        "FORTROLIG_BILLING__WEBHOOK_SECRET_FILES": str(
            private_file(tmp / "webhook", WEBHOOK_SECRET)
        ),
        "FORTROLIG_METRICS__TOKEN_FILE": str(
            private_file(tmp / "metrics", METRICS_SECRET.encode() + b"\n")
        ),
        "FORTROLIG_METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
    }
    srv = start_server(tmp, env)
    yield srv, metrics_port
    stop_server(srv)


@pytest.fixture
def server(edge: tuple[Server, int]) -> Server:
    return edge[0]


def access_token(server: Server) -> str:
    key, _ = load_or_create_signing_keys(server.data_dir)
    return TokenIssuer(key, "fortrolig", SystemClock()).issue(
        TokenKind.ACCESS, "dev-practitioner", Role.PRACTITIONER, ttl_s=900
    )


def request(
    server: Server, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one request (errors too)."""
    method = "POST" if body is not None else "GET"
    req = urllib.request.Request(
        server.base_url + path, data=body, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def port_of(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def connect(server: Server, source: str) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port_of(server)), timeout=WAIT_S, source_address=(source, 0)
    )
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def wait_for_log(server: Server, text: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while True:
        log = server.log_path.read_text()
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def assert_quiet_log(server: Server) -> None:
    log = server.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


# --- item 1: one reader, nesting refused before any handler ------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_nested_bodies_are_bad_json_on_every_json_route(server: Server, path: str) -> None:
    auth = {"Authorization": f"Bearer {access_token(server)}", "Content-Type": "application/json"}
    assert len(NESTED) < 16 * 1024
    status, headers, body = request(server, path, NESTED, auth)
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "bad_json"
    assert headers["Cache-Control"] == "no-store"
    assert_quiet_log(server)


def test_the_webhook_checks_its_signature_before_parsing(server: Server) -> None:
    status, _, body = request(server, "/billing/webhook", NESTED)
    assert status == 401, body  # unsigned: refused without a parse
    signature = sign(NESTED, WEBHOOK_SECRET, int(time.time()))
    status, _, body = request(server, "/billing/webhook", NESTED, {SIGNATURE_HEADER: signature})
    assert status == 400 and json.loads(body)["error"]["code"] == "malformed_event", body
    assert_quiet_log(server)


# --- item 2: deadlines and caps -------------------------------------------------------------


def test_a_slow_body_is_cut_off_with_408_within_the_limit(server: Server) -> None:
    with connect(server, "127.0.2.1") as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /api/v1/invite/redeem HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"request_timeout"' in answer
    assert BODY_TIMEOUT_S - 0.1 <= elapsed < BODY_TIMEOUT_S + WAIT_S
    assert server.metric("fortrolig_http_timeouts_total", phase="body") >= 1


def test_a_dripping_body_is_cut_off_too(server: Server) -> None:
    with connect(server, "127.0.2.2") as sock:
        sock.sendall(
            b"POST /api/v1/invite/redeem HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.settimeout(0.3)
        answer = b""
        deadline = time.monotonic() + BODY_TIMEOUT_S + WAIT_S
        while not answer and time.monotonic() < deadline:
            try:
                sock.sendall(b" ")  # one byte at a time, forever
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_slow_headers_get_408_and_idle_connections_are_closed(server: Server) -> None:
    with connect(server, "127.0.2.3") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    with connect(server, "127.0.2.4") as sock:
        assert read_until_closed(sock) == b""  # said nothing: closed quietly
    assert server.metric("fortrolig_http_timeouts_total", phase="headers") >= 1
    assert server.metric("fortrolig_http_timeouts_total", phase="idle") >= 1


def test_an_idle_keep_alive_connection_after_a_body_closes_without_a_408(server: Server) -> None:
    body = b'{"secret": "' + b"x" * 43 + b'"}'
    with connect(server, "127.0.2.6") as sock:
        sock.sendall(
            b"POST /api/v1/invite/redeem HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = read_until_closed(sock)  # the answer, then the quiet close of the idle one
    assert answer.count(b"HTTP/1.1 ") == 1 and b" 408 " not in answer, answer[:300]


def test_a_client_leaving_mid_body_causes_no_server_error(server: Server) -> None:
    with connect(server, "127.0.2.5") as sock:
        sock.sendall(
            b"POST /api/v1/invite/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
    log = wait_for_log(server, '"POST /api/v1/invite/verify" 400')
    assert '"POST /api/v1/invite/verify" 400' in log
    assert_quiet_log(server)


def test_connections_per_address_are_capped(server: Server) -> None:
    before = server.metric("fortrolig_http_refused_total", reason="connections_per_address")
    held = [connect(server, "127.0.3.1") for _ in range(PER_ADDRESS)]
    try:
        for sock in held:  # every one of them is served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(12) == b"HTTP/1.1 200"
        with connect(server, "127.0.3.1") as extra:
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if extra.recv(12) == b"":
                    raise ConnectionResetError("closed at once")
        with connect(server, "127.0.3.2") as other:  # another address is not affected
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_until_closed(other).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
    after = server.metric("fortrolig_http_refused_total", reason="connections_per_address")
    assert after == before + 1


async def test_websockets_per_address_are_capped(server: Server) -> None:
    def session(source: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))

    async with session("127.0.4.1") as http, session("127.0.4.2") as other:
        sockets = [await http.ws_connect(server.ws_url) for _ in range(WEBSOCKETS)]
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(server.ws_url)
            assert refused.value.status == 429
            async with other.ws_connect(server.ws_url):
                pass
        finally:
            for ws in sockets:
                await ws.close()
    assert server.metric("fortrolig_http_refused_total", reason="websockets_per_address") >= 1


# --- item 3: headers on every response ------------------------------------------------------

PAGES = ["/login", "/practice", "/invite", "/room/room-x", "/static/room.html"]
NOT_PAGES = [
    ("/static/room.css", 200),
    ("/healthz", 200),
    ("/api/v1/rooms/room-x", 401),  # API error
    ("/api/v1/invite/nope", 404),
    ("/nope", 404),
    ("/auth/login", 405),  # GET on a POST route
    ("/api/v1/invite/redeem", 405),
]


def check_common(headers: dict[str, str]) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Server"] == "Fortrolig"  # no Python/aiohttp version banner


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_page_policy(server: Server, path: str) -> None:
    status, headers, _ = request(server, path)
    assert status == 200
    check_common(headers)
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("path", "status"), NOT_PAGES)
def test_every_other_response_has_the_headers_too(server: Server, path: str, status: int) -> None:
    got, headers, _ = request(server, path)
    assert got == status
    check_common(headers)
    if not path.startswith("/static/"):
        assert headers["Cache-Control"] == "no-store"


def test_static_scripts_may_import_only_our_own_scripts(server: Server) -> None:
    # The media encryption worker runs under its own script's policy (Firefox enforces it): it
    # must be able to import frame-crypto.js, and nothing more.
    for path in ("/static/js/e2ee-worker.js", "/static/js/frame-crypto.js"):
        status, headers, _ = request(server, path)
        assert status == 200
        check_common(headers)
        policy = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy, policy
    _, headers, _ = request(server, "/static/room.css")
    assert "script-src" not in headers["Content-Security-Policy"]


def test_personal_responses_are_not_stored(server: Server) -> None:
    server.session_by_cli()  # billing is enforced here: this gives the dev practitioner access
    auth = {"Authorization": f"Bearer {access_token(server)}"}
    status, headers, _ = request(server, "/api/v1/subscription", headers=auth)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    status, headers, body = request(server, "/api/v1/rooms", b"{}", auth)
    assert status == 201 and headers["Cache-Control"] == "no-store"
    room = json.loads(body)["room_id"]
    status, headers, _ = request(server, f"/api/v1/rooms/{room}/tokens", b"{}", auth)
    assert status == 201 and headers["Cache-Control"] == "no-store"  # a join token
    login = json.dumps({"email": "a@klinik.dk", "password": "x" * 12, "totp": "123456"})
    status, headers, _ = request(server, "/auth/login", login.encode())
    assert status == 401 and headers["Cache-Control"] == "no-store"


# --- item 0: /metrics -----------------------------------------------------------------------


def test_metrics_are_refused_without_the_secret(edge: tuple[Server, int]) -> None:
    server, metrics_port = edge
    status, headers, _ = request(server, "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = request(server, "/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert status == 401
    status, _, body = request(server, "/metrics", headers=server.metrics_headers())
    assert status == 200 and b"fortrolig_http_connections" in body
    # The metrics listener serves /metrics (and nothing else) to whoever reaches it.
    url = f"http://127.0.0.1:{metrics_port}"
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert resp.status == 200 and b"fortrolig_rooms" in resp.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "/healthz", timeout=10)
    missing.value.close()
    assert missing.value.code == 404


# --- smaller: invalid UTF-8 text frames -----------------------------------------------------


def masked_frame(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + data


def read_frames(sock: socket.socket) -> list[tuple[int, bytes]]:
    """The server's frames until its close frame (or the end of the connection)."""
    data = read_until_closed(sock)
    frames = []
    while len(data) >= 2:
        opcode, size, start = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        frames.append((opcode, data[start : start + size]))
        data = data[start + size :]
    return frames


def test_invalid_utf8_text_frame_closes_1002_with_bad_json(server: Server) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with connect(server, "127.0.5.1") as sock:
        sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        assert head.startswith(b"HTTP/1.1 101") and accept in head
        sock.sendall(masked_frame(0x1, b'{"type": "\xff\xfe"}'))
        frames = read_frames(sock)
    texts: list[Any] = [json.loads(p) for op, p in frames if op == 0x1]
    closes = [p for op, p in frames if op == 0x8]
    assert texts and texts[0]["type"] == "error" and texts[0]["code"] == "bad_json", frames
    assert closes and int.from_bytes(closes[0][:2], "big") == 1002


async def test_a_server_error_has_the_headers_and_no_traceback() -> None:
    """A 500 (a bug in a handler) carries the same headers; in process, since a real node has
    no route that fails on purpose."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[error_middleware])
    app.on_response_prepare.append(security_headers_on_prepare)
    app.router.add_get("/api/v1/broken", broken)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v1/broken")
        assert resp.status == 500
        assert (await resp.json())["error"] == {
            "code": "internal_error",
            "message": "internal error",
        }
        check_common(dict(resp.headers))
        assert resp.headers["Cache-Control"] == "no-store"

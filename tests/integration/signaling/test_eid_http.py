"""AiohttpEidHttp against a small aiohttp server on 127.0.0.1: no redirects, bounded bodies and
time, and every failure to get an answer as EidTransportError."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from fortrolig.signaling.eid import EidTransportError
from fortrolig.signaling.eid.http import AiohttpEidHttp


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    async def json_doc(request: web.Request) -> web.Response:
        return web.Response(body=b'{"ok": true}', content_type="Application/JSON")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/json")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to trust
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="late")

    async def form(request: web.Request) -> web.Response:
        data = await request.post()
        return web.json_response({"form": dict(data), "auth": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_get("/json", json_doc)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_post("/form", form)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_get_post_redirect_and_limits(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        http = AiohttpEidHttp(session, timeout_s=0.3, max_body_bytes=16 * 1024)
        ok = await http.get(base_url + "/json")
        assert (ok.status, ok.content_type, ok.body) == (200, "application/json", b'{"ok": true}')
        moved = await http.get(base_url + "/redirect")
        assert moved.status == 302  # never followed
        posted = await http.post_form(
            base_url + "/form", {"code": "a b&c"}, {"Authorization": "Basic eDp5"}
        )
        assert posted.body == b'{"form": {"code": "a b&c"}, "auth": "Basic eDp5"}'
        with pytest.raises(EidTransportError):
            await http.get(base_url + "/big")
        with pytest.raises(EidTransportError):
            await http.get(base_url + "/slow")


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(EidTransportError):
            await AiohttpEidHttp(session).get(f"http://127.0.0.1:{port}/")

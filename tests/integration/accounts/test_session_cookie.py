"""Browser sessions with the refresh token in an HttpOnly cookie (docs/security.md, "Browser
login across tabs"), on a real aiohttp server on loopback. The client keeps no cookie jar: every
test sends exactly the cookie it means to, so what the server set and accepts is explicit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from accounts_support import EMAIL, PASSWORD, IssuerMinter, code_for, enrolled, make_service
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.accounts.account_http import COOKIE_NAME, SESSION_HEADER, account_routes
from fortrolig.accounts.account_service import AccountService
from fortrolig.core.clock import FakeClock
from fortrolig.signaling.auth import TokenKind, TokenVerifier
from fortrolig.signaling.http import error_middleware

SERVICE = web.AppKey("accounts", AccountService)
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def service(
    tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> AsyncIterator[AccountService]:
    svc = make_service(f"sqlite:///{tmp_path / 'accounts.db'}", tmp_path, clock, minter)
    await svc.start()
    yield svc
    await svc.close()


@pytest.fixture
async def client(service: AccountService) -> AsyncIterator[Client]:
    app = web.Application(middlewares=[error_middleware])
    app[SERVICE] = service
    app.add_routes(account_routes(SERVICE))
    server = TestServer(app, host="127.0.0.1")
    async with TestClient(server, cookie_jar=aiohttp.DummyCookieJar()) as test_client:
        yield test_client


def origin(client: Client) -> str:
    return f"http://127.0.0.1:{client.port}"


def browser(client: Client, cookie: str | None = None, **extra: str) -> dict[str, str]:
    """The headers the session page sends: the session header, its own Origin, the cookie."""
    headers = {SESSION_HEADER: "cookie", "Origin": origin(client), **extra}
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE_NAME}={cookie}"
    return headers


def set_cookie(response: aiohttp.ClientResponse) -> Any:
    """The one refresh cookie the response set (a ``Morsel``)."""
    values = response.headers.getall("Set-Cookie")
    assert len(values) == 1, values
    jar: SimpleCookie = SimpleCookie()
    jar.load(values[0])
    return jar[COOKIE_NAME]


async def cookie_login(client: Client, secret: str, clock: FakeClock) -> tuple[dict[str, Any], str]:
    body = {"email": EMAIL, "password": PASSWORD, "totp": code_for(secret, clock)}
    response = await client.post("/auth/login", json=body, headers=browser(client))
    assert response.status == 200, await response.text()
    return await response.json(), set_cookie(response).value


async def test_login_puts_the_refresh_token_in_an_httponly_strict_cookie_only(
    client: Client, service: AccountService, clock: FakeClock, verifier: TokenVerifier
) -> None:
    secret = await enrolled(service, clock)
    body = {"email": EMAIL, "password": PASSWORD, "totp": code_for(secret, clock)}
    response = await client.post("/auth/login", json=body, headers=browser(client))
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    data = await response.json()
    assert "refresh_token" not in data and data["session"] == "cookie"
    await verifier.verify(data["access_token"], TokenKind.ACCESS, consume=False)
    morsel = set_cookie(response)
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/auth"
    assert not morsel["secure"]  # plain http on loopback; over https it is Secure (below)
    assert int(morsel["max-age"]) == data["refresh_expires_at"] - int(clock.now())
    assert len(morsel.value) > 30


async def test_the_cookie_refreshes_each_tab_and_rotates(
    client: Client, service: AccountService, clock: FakeClock, verifier: TokenVerifier
) -> None:
    secret = await enrolled(service, clock)
    login, first = await cookie_login(client, secret, clock)
    # A second tab has no token of its own: the cookie alone gets it one.
    response = await client.post("/auth/refresh", headers=browser(client, first))
    assert response.status == 200, await response.text()
    tab2 = await response.json()
    assert "refresh_token" not in tab2 and tab2["practitioner_id"] == login["practitioner_id"]
    await verifier.verify(tab2["access_token"], TokenKind.ACCESS, consume=False)
    second = set_cookie(response).value
    assert second != first
    # The next tab (or the next refresh) uses the rotated cookie the browser now holds.
    response = await client.post("/auth/refresh", json={}, headers=browser(client, second))
    assert response.status == 200
    third = set_cookie(response).value
    # A stolen, already rotated cookie ends the whole session (reuse detection) ...
    response = await client.post("/auth/refresh", headers=browser(client, first))
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "refresh_invalid"
    assert set_cookie(response).value == ""  # ... and the dead cookie is cleared
    response = await client.post("/auth/refresh", headers=browser(client, third))
    assert response.status == 401


async def test_a_cookie_is_spent_only_by_the_nodes_own_pages(
    client: Client, service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    _, cookie = await cookie_login(client, secret, clock)
    cases: list[tuple[dict[str, str], int, str]] = [
        ({"Cookie": f"{COOKIE_NAME}={cookie}", "Origin": origin(client)}, 400, "bad_field"),
        ({**browser(client, cookie), "Origin": "https://evil.example"}, 403, "cross_origin"),
        ({**browser(client, cookie), "Origin": "null"}, 403, "cross_origin"),
        (
            {**browser(client, cookie), "Origin": f"https://127.0.0.1:{client.port}"},
            403,
            "cross_origin",
        ),
        ({SESSION_HEADER: "cookie", "Cookie": f"{COOKIE_NAME}={cookie}"}, 403, "cross_origin"),
        (browser(client), 401, "refresh_invalid"),  # no cookie
    ]
    for headers, status, code in cases:
        # Without the session header the JSON form is used: it never reads the cookie.
        response = await client.post("/auth/refresh", json={}, headers=headers)
        assert response.status == status, (headers, await response.text())
        assert (await response.json())["error"]["code"] == code
    response = await client.post(
        "/auth/refresh", json={"refresh_token": cookie}, headers=browser(client, cookie)
    )
    assert response.status == 400  # a cookie request carries no body fields
    # None of the refusals spent the cookie.
    response = await client.post("/auth/refresh", headers=browser(client, cookie))
    assert response.status == 200


async def test_logout_ends_the_cookie_session_and_clears_the_cookie(
    client: Client, service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    _, cookie = await cookie_login(client, secret, clock)
    refused = await client.post("/auth/logout", headers={SESSION_HEADER: "cookie"})
    assert refused.status == 403  # no Origin: refused, nothing ended
    response = await client.post("/auth/logout", headers=browser(client, cookie))
    assert response.status == 204
    assert set_cookie(response).value == ""
    response = await client.post("/auth/refresh", headers=browser(client, cookie))
    assert response.status == 401
    # Logging out without a cookie is answered the same (nothing to end).
    response = await client.post("/auth/logout", headers=browser(client))
    assert response.status == 204


async def test_over_https_the_cookie_is_secure_and_prefixed(
    service: AccountService, clock: FakeClock
) -> None:
    """Behind a TLS-terminating proxy the request is https (edge middleware); simulated here by
    marking the request secure the same way, with request.clone(scheme=...)."""

    @web.middleware
    async def as_https(request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request.clone(scheme="https"))

    app = web.Application(middlewares=[error_middleware, as_https])
    app[SERVICE] = service
    app.add_routes(account_routes(SERVICE))
    secret = await enrolled(service, clock)
    async with TestClient(
        TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar()
    ) as client:
        body = {"email": EMAIL, "password": PASSWORD, "totp": code_for(secret, clock)}
        headers = {SESSION_HEADER: "cookie", "Origin": f"https://127.0.0.1:{client.port}"}
        response = await client.post("/auth/login", json=body, headers=headers)
        assert response.status == 200
        jar: SimpleCookie = SimpleCookie()
        jar.load(response.headers["Set-Cookie"])
        morsel = jar["__Secure-fortrolig-refresh"]
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
        # The plain name is not read over https (a cookie set over http cannot pose as it).
        plain = {**headers, "Cookie": f"{COOKIE_NAME}={morsel.value}"}
        response = await client.post("/auth/refresh", headers=plain)
        assert response.status == 401
        good = {**headers, "Cookie": f"__Secure-fortrolig-refresh={morsel.value}"}
        response = await client.post("/auth/refresh", headers=good)
        assert response.status == 200

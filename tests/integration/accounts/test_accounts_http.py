"""The account routes on a real aiohttp server on loopback, with the node's error middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from accounts_support import PASSWORD, IssuerMinter, code_for, make_service
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.accounts.account_http import MAX_BODY, account_routes
from fortrolig.accounts.account_service import AccountService
from fortrolig.core.clock import FakeClock
from fortrolig.signaling.auth import TokenKind, TokenVerifier
from fortrolig.signaling.http import error_middleware

SERVICE = web.AppKey("accounts", AccountService)
Client = TestClient[web.Request, web.Application]
EMAIL = "anna.berg@klinik.dk"


@pytest.fixture
async def client(tmp_path: Path, clock: FakeClock, minter: IssuerMinter) -> AsyncIterator[Client]:
    service = make_service(f"sqlite:///{tmp_path / 'accounts.db'}", tmp_path, clock, minter)
    await service.start()
    app = web.Application(middlewares=[error_middleware])
    app[SERVICE] = service
    app.add_routes(account_routes(SERVICE))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
    await service.close()


async def post(client: Client, path: str, body: Any, status: int) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status == status, await response.text()
    if status == 204:
        return {}
    data: dict[str, Any] = await response.json()
    return data


async def test_signup_enrol_confirm_login_refresh_logout(
    client: Client, clock: FakeClock, verifier: TokenVerifier
) -> None:
    created = await post(
        client,
        "/auth/signup",
        {"email": "Anna.Berg@Klinik.dk", "display_name": "Anna Berg", "password": PASSWORD},
        201,
    )
    assert created["email"] == EMAIL and created["state"] == "totp_enrolment_required"
    credentials = {"email": EMAIL, "password": PASSWORD}
    response = await client.post("/auth/totp/enrol", json=credentials)
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    enrolment = await response.json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/Fortrolig:anna.berg@klinik.dk?")
    code = code_for(enrolment["secret"], clock)
    confirmed = await post(client, "/auth/totp/confirm", {**credentials, "totp": code}, 200)
    assert confirmed == {"state": "active"}
    clock.advance(30)

    response = await client.post(
        "/auth/login", json={**credentials, "totp": code_for(enrolment["secret"], clock)}
    )
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    login = await response.json()
    assert set(login) == {
        "practitioner_id", "token_type", "access_token", "expires_at", "refresh_token",
        "refresh_expires_at",
    }  # fmt: skip
    claims = await verifier.verify(login["access_token"], TokenKind.ACCESS, consume=False)
    assert claims.sub == created["practitioner_id"] == login["practitioner_id"]
    assert login["expires_at"] == claims.exp == int(clock.now()) + 900

    response = await client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    refreshed = await response.json()
    assert refreshed["refresh_token"] != login["refresh_token"]
    await verifier.verify(refreshed["access_token"], TokenKind.ACCESS, consume=False)

    await post(client, "/auth/logout", {"refresh_token": refreshed["refresh_token"]}, 204)
    gone = await post(client, "/auth/refresh", {"refresh_token": refreshed["refresh_token"]}, 401)
    assert gone["error"]["code"] == "refresh_invalid"

    clock.advance(30)
    change = {
        "email": EMAIL,
        "current_password": PASSWORD,
        "totp": code_for(enrolment["secret"], clock),
        "new_password": "en helt ny og lang adgangssætning",
    }
    await post(client, "/auth/password", change, 204)


async def test_unknown_email_and_wrong_password_look_the_same(client: Client) -> None:
    await post(
        client,
        "/auth/signup",
        {"email": EMAIL, "display_name": "Anna Berg", "password": PASSWORD},
        201,
    )
    bodies = []
    for email in (EMAIL, "nobody@klinik.dk"):
        for path, extra in (("/auth/login", {"totp": "123456"}), ("/auth/totp/enrol", {})):
            body = {"email": email, "password": "not the password", **extra}
            bodies.append(await post(client, path, body, 401))
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["error"]["code"] == "invalid_credentials"


async def test_throttled_logins_get_429_with_retry_after(client: Client) -> None:
    body = {"email": "nobody@klinik.dk", "password": "not the password", "totp": "123456"}
    for _ in range(5):
        await post(client, "/auth/login", body, 401)
    response = await client.post("/auth/login", json=body)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"]["code"] == "login_throttled"


async def test_bad_bodies_are_refused_with_typed_errors(client: Client) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"email": EMAIL, "password": PASSWORD, "admin": True}, 400, "bad_field"),
        ({"email": EMAIL}, 400, "bad_field"),
        ({"email": EMAIL, "password": 12345678901234}, 400, "bad_field"),
        (["not", "an", "object"], 400, "bad_json"),
        ({"email": "x" * 400, "password": PASSWORD}, 400, "bad_field"),
    ]
    for body, status, code in cases:
        answer = await post(client, "/auth/totp/enrol", body, status)
        assert answer["error"]["code"] == code, body
    response = await client.post("/auth/login", data=b"{not json")
    assert response.status == 400 and (await response.json())["error"]["code"] == "bad_json"
    response = await client.post("/auth/login", data=b"{" + b" " * MAX_BODY + b"}")
    assert response.status == 413
    weak = {"email": EMAIL, "display_name": "Anna", "password": "password1234"}
    assert (await post(client, "/auth/signup", weak, 400))["error"]["code"] == "weak_password"
    bad = {"email": "anna", "display_name": "Anna", "password": PASSWORD}
    assert (await post(client, "/auth/signup", bad, 400))["error"]["code"] == "invalid_email"

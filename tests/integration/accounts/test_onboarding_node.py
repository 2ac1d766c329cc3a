"""Onboarding and the account's settings on a real node (subprocess on loopback, real SMTP
server): confirmation by link, enrolment with a QR code, recovery codes, forgotten password that
still demands the second factor, settings, the free trial. Every bad input is a typed 4xx that
changes nothing."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from fortrolig.accounts.totp import totp
from tests.conftest import Server, start_server, stop_server
from tests.mailbox import Mailbox

pytestmark = pytest.mark.timeout(60)
PASSWORD = "grønne fyrtårne i tågen"
LINK = re.compile(r"(https?://\S+/(confirm|reset)#flk_[A-Za-z0-9_-]{43})")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("onboarding-node"), mailbox.env)
    yield srv
    stop_server(srv)


def call(
    node: Server, path: str, body: Any = None, token: str | None = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """One request; (status, JSON body or {})."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    method = "GET" if data is None else "POST"
    req = urllib.request.Request(node.base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(json.loads(resp.read() or b"{}"))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read() or b"{}"))


def code_of(answer: dict[str, Any]) -> str:
    return str(answer.get("error", {}).get("code"))


def mail_link(mailbox: Mailbox, to: str, count: int, kind: str) -> str:
    """The token of the ``count``-th mail to ``to`` (waits for it, bounded)."""
    deadline = time.monotonic() + 10
    while len(mailbox.to(to)) < count:
        assert time.monotonic() < deadline, f"no mail #{count} to {to}"
        time.sleep(0.05)
    found = LINK.search(mailbox.to(to)[count - 1].body)
    assert found and found.group(2) == kind, mailbox.to(to)[count - 1].body
    return found.group(1).split("#", 1)[1]


def secret_of(enrolment: dict[str, Any]) -> bytes:
    b32 = str(enrolment["secret"])
    return base64.b32decode(b32 + "=" * (-len(b32) % 8))


def signed_up_and_confirmed(node: Server, mailbox: Mailbox, email: str) -> str:
    status, body = call(
        node, "/auth/signup", {"email": email, "display_name": "Sofie", "password": PASSWORD}
    )
    assert status == 201 and body["confirmation_sent"] is True, body
    token = mail_link(mailbox, email, 1, "confirm")
    status, body = call(node, "/auth/email/confirm", {"token": token})
    assert status == 200 and body["email"] == email, body
    return token


def test_confirmation_link_is_required_once_and_typed(node: Server, mailbox: Mailbox) -> None:
    email = "sofie.confirm@klinik.dk"
    status, _ = call(
        node, "/auth/signup", {"email": email, "display_name": "Sofie", "password": PASSWORD}
    )
    assert status == 201
    creds = {"email": email, "password": PASSWORD}
    status, body = call(node, "/auth/totp/enrol", creds)
    assert (status, code_of(body)) == (403, "email_unconfirmed")
    token = mail_link(mailbox, email, 1, "confirm")
    assert "/confirm#" in mailbox.to(email)[0].body
    for bad, expected in (
        ({"token": "x"}, "invalid_link"),
        ({"token": "flk_" + "A" * 43}, "invalid_link"),
        ({"token": token, "extra": "1"}, "bad_field"),
        ({}, "bad_field"),
        ({"token": 7}, "bad_field"),
    ):
        status, body = call(node, "/auth/email/confirm", bad)
        assert (status, code_of(body)) == (400, expected), (bad, body)
    status, body = call(node, "/auth/email/confirm", raw=b"{not json")
    assert (status, code_of(body)) == (400, "bad_json")
    # Nothing above confirmed anything: still refused, and the real link still works once.
    assert call(node, "/auth/totp/enrol", creds)[0] == 403
    assert call(node, "/auth/email/confirm", {"token": token})[0] == 200
    status, body = call(node, "/auth/email/confirm", {"token": token})
    assert (status, code_of(body)) == (400, "invalid_link")
    status, enrolment = call(node, "/auth/totp/enrol", creds)
    assert status == 200 and enrolment["qr_svg"].startswith("data:image/svg+xml")
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")


def test_recovery_codes_reset_by_link_settings_and_trial(node: Server, mailbox: Mailbox) -> None:
    email = "sofie.reset@klinik.dk"
    signed_up_and_confirmed(node, mailbox, email)
    _, enrolment = call(node, "/auth/totp/enrol", {"email": email, "password": PASSWORD})
    secret = secret_of(enrolment)
    body = {"email": email, "password": PASSWORD, "totp": totp(secret, time.time())}
    status, done = call(node, "/auth/totp/confirm", body)
    assert status == 200 and done["state"] == "active" and done["access_token"], done
    codes = done["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    token = done["access_token"]

    # -- settings: who am I, a bad name changes nothing, a good one sticks.
    assert call(node, "/api/v1/account")[0] == 401
    status, me = call(node, "/api/v1/account", token=token)
    assert status == 200 and me["recovery_codes_left"] == 10 and me["display_name"] == "Sofie"
    status, body = call(node, "/api/v1/account/name", {"display_name": "  "}, token=token)
    assert (status, code_of(body)) == (400, "invalid_display_name")
    status, body = call(node, "/api/v1/account/name", {"name": "x"}, token=token)
    assert (status, code_of(body)) == (400, "bad_field")
    assert call(node, "/api/v1/account", token=token)[1]["display_name"] == "Sofie"
    assert call(node, "/api/v1/account/name", {"display_name": "Sofie Holm"}, token=token)[0] == 200

    # -- the free trial, once.
    status, sub = call(node, "/api/v1/subscription/trial", {}, token=token)
    assert status == 201 and sub["state"] == "trial" and sub["access"] == "sessions", sub
    status, body = call(node, "/api/v1/subscription/trial", {}, token=token)
    assert (status, code_of(body)) == (409, "trial_not_allowed")
    status, body = call(node, "/api/v1/subscription/trial", {"days": "90"}, token=token)
    assert (status, code_of(body)) == (400, "bad_field")

    # -- forgotten password: the same answer for an unknown address, and no mail for it.
    assert call(node, "/auth/password/forgot", {"email": "nobody@klinik.dk"})[0] == 202
    assert call(node, "/auth/password/forgot", {"email": email})[0] == 202
    reset = mail_link(mailbox, email, 2, "reset")
    assert not mailbox.to("nobody@klinik.dk")
    new_password = "violette skyer over havnen"
    status, body = call(node, "/auth/password/reset", {"token": reset, "new_password": "short"})
    assert (status, code_of(body)) == (400, "weak_password")
    status, body = call(node, "/auth/password/reset", {"token": "flk_x", "new_password": "x" * 20})
    assert (status, code_of(body)) == (400, "invalid_link")
    # The refused password spent nothing: the link still works. (The cut-off for tokens is in
    # whole seconds: a token from the same second as the reset would survive it.)
    time.sleep(1.05)
    assert (
        call(node, "/auth/password/reset", {"token": reset, "new_password": new_password})[0] == 204
    )
    status, body = call(
        node, "/auth/password/reset", {"token": reset, "new_password": new_password}
    )
    assert (status, code_of(body)) == (400, "invalid_link")
    # Every session ended with the reset.
    assert code_of(call(node, "/api/v1/account", token=token)[1]) == "token_revoked"

    # -- the reset never bypasses the second factor; a recovery code works exactly once.
    for second in ("", "000000"):
        status, body = call(
            node, "/auth/login", {"email": email, "password": new_password, "totp": second}
        )
        assert (status, code_of(body)) == (401, "invalid_credentials")
    login = {"email": email, "password": new_password, "totp": codes[0].upper()}
    status, session = call(node, "/auth/login", login)
    assert status == 200 and session["access_token"], session
    status, body = call(node, "/auth/login", login)
    assert (status, code_of(body)) == (401, "invalid_credentials")
    me = call(node, "/api/v1/account", token=session["access_token"])[1]
    assert me["recovery_codes_left"] == 9 and me["display_name"] == "Sofie Holm"

    # -- log out everywhere: the access token and the refresh token both die.
    status, body = call(node, "/api/v1/account/logout-all", {"x": 1}, token=session["access_token"])
    assert (status, code_of(body)) == (400, "bad_field")
    time.sleep(1.05)  # the token's second is before the cut-off's (whole seconds)
    assert call(node, "/api/v1/account/logout-all", {}, token=session["access_token"])[0] == 204
    assert call(node, "/api/v1/account", token=session["access_token"])[0] == 401
    status, body = call(node, "/auth/refresh", {"refresh_token": session["refresh_token"]})
    assert status == 401


def test_forgot_password_is_rate_limited(node: Server) -> None:
    statuses = []
    for _ in range(14):
        status, body = call(node, "/auth/password/forgot", {"email": "flood@klinik.dk"})
        statuses.append((status, code_of(body) if status != 202 else ""))
    assert statuses[0] == (202, "")
    assert (429, "login_throttled") in statuses, statuses

"""The billing webhook on a real node: signed events give a practitioner session access,
replays change nothing, bad signatures are refused; a failed payment's suspension blocks."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import Server, start_server, stop_server

SECRET = b"whsec_" + b"x" * 40


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("billing")
    path = tmp / "webhook.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, SECRET)
    os.close(fd)
    srv = start_server(tmp, {"FORTROLIG_BILLING__WEBHOOK_SECRET_FILES": str(path)})
    yield srv
    stop_server(srv)


def call(
    node: Server, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(node.base_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.loads(exc.read()))


def deliver(
    node: Server, event: dict[str, Any], secret: bytes = SECRET
) -> tuple[int, dict[str, Any]]:
    body = json.dumps(event).encode()
    t = int(time.time())
    sig = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "Fortrolig-Signature": f"t={t},v1={sig}"}
    return call(node, "POST", "/billing/webhook", body, headers)


def access_token(node: Server, who: str) -> str:
    key, _ = load_or_create_signing_keys(node.data_dir)
    issuer = TokenIssuer(key, "fortrolig", SystemClock())
    return issuer.issue(TokenKind.ACCESS, who, Role.PRACTITIONER, ttl_s=300)


def create_room(node: Server, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return call(node, "POST", "/api/v1/rooms", b"{}", headers)[0]


def test_signed_events_grant_sessions_and_replays_change_nothing(node: Server) -> None:
    who = "prac_webhook"
    token = access_token(node, who)
    assert create_room(node, token) == 403  # no subscription yet: billing is enforced
    now = int(time.time())
    created = {
        "id": "evt_1",
        "type": "subscription_created",
        "created": now,
        "data": {"practitioner_id": who, "plan": "monthly", "start": now},
    }
    paid = {
        "id": "evt_2",
        "type": "payment_succeeded",
        "created": now,
        "data": {"practitioner_id": who, "period_start": now},
    }
    assert deliver(node, created)[0] == 200
    status, body = deliver(node, paid)
    assert status == 200 and body["applied"] is True
    status, body = deliver(node, paid)  # the provider retries
    assert status == 200 and body["duplicate"] is True
    headers = {"Authorization": f"Bearer {token}"}
    status, body = call(node, "GET", "/api/v1/subscription", None, headers)
    assert status == 200 and body["access"] == "sessions"
    assert create_room(node, token) == 201


def test_bad_signatures_are_refused_and_change_nothing(node: Server) -> None:
    who = "prac_forged"
    now = int(time.time())
    event = {
        "id": "evt_forged",
        "type": "subscription_created",
        "created": now,
        "data": {"practitioner_id": who, "plan": "monthly", "start": now},
    }
    status, body = deliver(node, event, secret=b"not-the-secret" * 3)
    assert status == 401 and body["error"]["code"] == "signature_invalid"
    body_bytes = json.dumps(event).encode()
    status, body = call(node, "POST", "/billing/webhook", body_bytes, {})
    assert status == 401 and body["error"]["code"] == "signature_missing"
    assert create_room(node, access_token(node, who)) == 403

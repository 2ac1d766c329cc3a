"""Ephemeral TURN credentials (TURN REST / coturn use-auth-secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from fortrolig.signaling.turn import ice_servers_for, turn_credentials

SECRET = b"s" * 32


def test_credentials_follow_the_turn_rest_scheme() -> None:
    creds = turn_credentials(SECRET, "p_abc", now=1_700_000_000.4, ttl_s=600)
    assert creds.username == "1700000600:p_abc"
    expected = hmac.new(SECRET, b"1700000600:p_abc", hashlib.sha1).digest()
    assert base64.b64decode(creds.credential) == expected
    assert creds.expires_at == 1_700_000_600


def test_other_secret_or_user_gives_other_password() -> None:
    a = turn_credentials(SECRET, "p_a", 0, 60)
    assert a.credential != turn_credentials(b"t" * 32, "p_a", 0, 60).credential
    assert a.credential != turn_credentials(SECRET, "p_b", 0, 60).credential


def test_user_with_colon_is_refused() -> None:
    with pytest.raises(ValueError):
        turn_credentials(SECRET, "a:b", 0, 60)


def test_ice_servers_without_turn_secret_offer_no_turn() -> None:
    servers = ice_servers_for(
        ("stun:stun.example.eu:3478",), ("turn:t.example.eu",), None, "p", 0, 60
    )
    assert servers == [{"urls": ["stun:stun.example.eu:3478"]}]
    assert ice_servers_for((), (), SECRET, "p", 0, 60) == []


def test_ice_servers_with_turn() -> None:
    servers = ice_servers_for((), ("turn:t.example.eu:3478?transport=udp",), SECRET, "p_x", 100, 60)
    assert servers[0]["urls"] == ["turn:t.example.eu:3478?transport=udp"]
    assert servers[0]["username"] == "160:p_x"

"""Ephemeral TURN credentials (the "TURN REST" scheme coturn implements with use-auth-secret).

username = "<expiry unix seconds>:<participant id>", password = base64(HMAC-SHA1(secret, username)).
The TURN server recomputes the password from its static-auth-secret and refuses expired names, so
nothing has to be stored and a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TurnCredentials:
    """A short-lived TURN username/password pair."""

    username: str
    credential: str
    expires_at: int


def turn_credentials(secret: bytes, user: str, now: float, ttl_s: int) -> TurnCredentials:
    """Credentials for ``user`` valid for ``ttl_s`` seconds from ``now``."""
    if ":" in user:
        raise ValueError("the user part must not contain ':'")
    expires = int(now) + ttl_s
    username = f"{expires}:{user}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return TurnCredentials(username, base64.b64encode(digest).decode(), expires)


def ice_servers_for(
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    secret: bytes | None,
    user: str,
    now: float,
    ttl_s: int,
) -> list[dict[str, Any]]:
    """The ``iceServers`` for a participant: STUN as configured, TURN with fresh credentials."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and secret is not None:
        creds = turn_credentials(secret, user, now, ttl_s)
        servers.append(
            {"urls": list(turn_urls), "username": creds.username, "credential": creds.credential}
        )
    return servers

"""A minimal RFC 5766 TURN client over UDP: Allocate, then CreatePermission, long-term auth.

Enough to ask a TURN server for a permission toward a peer and read its answer; built on
aioice's STUN message codec (the TURN client in aioice hides the error codes we assert).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from aioice import stun
from aioice.turn import UDP_TRANSPORT, make_integrity_key


@dataclass
class TurnClient:
    """One UDP allocation on ``server`` with TURN REST credentials."""

    server: tuple[str, int]
    username: str
    password: str
    realm: str = ""
    nonce: bytes = b""
    relayed: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))  # loopback only, like the server
        self.sock.settimeout(3)

    def close(self) -> None:
        """Release the allocation (Refresh with lifetime 0), then the socket."""
        try:
            if self.relayed is not None:
                self._request(stun.Method.REFRESH, LIFETIME=0)
        except OSError:
            pass  # the server is gone: nothing to release
        finally:
            self.sock.close()

    def _send(self, message: stun.Message) -> stun.Message:
        self.sock.sendto(bytes(message), self.server)
        while True:
            data, _ = self.sock.recvfrom(4096)
            answer = stun.parse_message(data)
            if answer.transaction_id == message.transaction_id:
                return answer

    def _request(self, method: stun.Method, **attributes: object) -> stun.Message:
        """Send an authenticated request; learns realm and nonce from a 401 or 438 first."""
        for _ in range(3):
            message = stun.Message(method, stun.Class.REQUEST, transaction_id=os.urandom(12))
            message.attributes.update(attributes)
            if self.nonce:
                message.attributes["USERNAME"] = self.username
                message.attributes["REALM"] = self.realm
                message.attributes["NONCE"] = self.nonce
                message.add_message_integrity(
                    make_integrity_key(self.username, self.realm, self.password)
                )
            answer = self._send(message)
            code = error_code(answer)
            if code in (401, 438) and "NONCE" in answer.attributes:
                self.realm = str(answer.attributes["REALM"])
                self.nonce = bytes(answer.attributes["NONCE"])
                continue
            return answer
        raise AssertionError("the TURN server kept asking for authentication")

    def allocate(self) -> tuple[str, int]:
        """A UDP relay allocation; its relayed address."""
        answer = self._request(stun.Method.ALLOCATE, **{"REQUESTED-TRANSPORT": UDP_TRANSPORT})
        assert answer.message_class == stun.Class.RESPONSE, answer
        relayed = answer.attributes["XOR-RELAYED-ADDRESS"]
        self.relayed = (str(relayed[0]), int(relayed[1]))
        return self.relayed

    def create_permission(self, peer: str) -> int | None:
        """Ask for a permission toward ``peer``: None when granted, else the error code."""
        answer = self._request(stun.Method.CREATE_PERMISSION, **{"XOR-PEER-ADDRESS": (peer, 9)})
        return error_code(answer)


def error_code(message: stun.Message) -> int | None:
    """The ERROR-CODE of an error response (None for a success)."""
    if message.message_class != stun.Class.ERROR:
        return None
    code, _reason = message.attributes["ERROR-CODE"]
    return int(code)

"""The coturn configuration we ship refuses to relay toward internal and reserved ranges.

A real turnserver (Debian's coturn 4.6.1) runs deploy/coturn/turnserver.conf, changed only in
listeners, secret and log (tests/support/coturn.py), without ``allow-loopback-peers``. A small
RFC 5766 client (tests/support/turn_client.py) allocates with TURN REST credentials minted the
way the node mints them, then asks for permissions. CreatePermission sends nothing to the peer:
no packet leaves 127.0.0.1, also for the public control address.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.support.coturn import Coturn, start_coturn
from tests.support.turn_client import TurnClient

pytestmark = pytest.mark.timeout(60)

FORBIDDEN = 403  # RFC 5766: Forbidden (coturn's answer for a denied peer IP)
UNAUTHORIZED = 401

# Peers a TURN allocation must never reach: each is in a denied-peer-ip range of the shipped
# file, and coturn names the address in its log.
DENIED_RANGES = [
    "10.1.2.3",  # private
    "172.16.0.9",  # private
    "192.168.1.1",  # private
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # link local: cloud metadata services
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "203.0.113.50",  # documentation
]
# Refused before the range check (loopback, no-multicast-peers; coturn 4.6.1 logs none of them).
DENIED_SILENTLY = ["127.0.0.1", "127.8.8.8", "0.0.0.0", "224.0.0.1", "239.255.255.250"]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    turn = start_coturn(tmp_path_factory.mktemp("coturn"), allow_loopback=False)
    yield turn
    turn.stop()


_users = itertools.count()


@pytest.fixture
def client(coturn: Coturn) -> Iterator[TurnClient]:
    # A user of its own per test: the shipped user-quota bounds allocations per username.
    username, password = coturn.credentials(f"p_policy{next(_users)}")
    turn = TurnClient(("127.0.0.1", coturn.port), username, password)
    try:
        turn.allocate()
        yield turn
    finally:
        turn.close()


@pytest.mark.parametrize("peer", DENIED_RANGES)
def test_a_permission_toward_a_denied_range_is_403_and_logged(
    client: TurnClient, coturn: Coturn, peer: str
) -> None:
    assert client.create_permission(peer) == FORBIDDEN
    assert f"A peer IP {peer} denied in the range" in coturn.log()


@pytest.mark.parametrize("peer", DENIED_SILENTLY)
def test_loopback_and_unspecified_peers_are_403(client: TurnClient, peer: str) -> None:
    assert client.create_permission(peer) == FORBIDDEN


def test_a_public_peer_is_allowed(client: TurnClient) -> None:
    # The control: the refusals above are the ranges', not a server that refuses everything
    # (a "::" range in the shipped file once did exactly that on coturn 4.6.1).
    assert client.create_permission("93.184.216.34") is None
    assert client.create_permission("2001:4860::8888") is not None  # family mismatch: v4 relay


def test_credentials_from_another_secret_are_refused(coturn: Coturn) -> None:
    username, _ = coturn.credentials("p_intruder")
    for _attempt in range(3):
        turn = TurnClient(("127.0.0.1", coturn.port), username, "c29tZXRoaW5nIGVsc2U=")
        try:
            with pytest.raises(AssertionError) as refused:
                turn.allocate()
        finally:
            turn.close()
        # 437: the kernel gave this socket the port of an allocation another test left behind
        # (coturn keeps it for its lifetime); that says nothing of these credentials: again.
        if "(437," not in str(refused.value):
            break
    assert "kept asking for authentication" in str(refused.value), refused.value

"""Chromium holds a force_relay consultation through a real coturn, over UDP and over TLS.

The test starts Debian's turnserver on free 127.0.0.1 ports with the configuration we ship
(tests/support/coturn.py) and a node whose ``media.turn_urls`` name it. The room is created with
``force_relay``, so both pages set ``iceTransportPolicy: "relay"``: Chromium gathers only relay
candidates from coturn, and the selected pair in getStats must be ``relay`` on the browser's
side, with SRTP AES-256-GCM.

Loopback peers: the SFU's ICE address is 127.0.0.1, and coturn refuses loopback peers by
default (and the shipped file denies 127.0.0.0/8). Here coturn runs with
``allow-loopback-peers`` and without the loopback denials: reliable on any machine that can
run the other e2e tests (no root, no network namespaces, no veth, nothing leaves 127.0.0.1).
Everything else of the shipped file stays, and tests/integration/media/test_coturn_policy.py checks
the unmodified denials. ``allow-loopback-peers`` is for tests only, never in the shipped file.

TURN over TLS uses a certificate for 127.0.0.1 from a CA the test generates; Chromium trusts it
through ``--ignore-certificate-errors-spki-list`` naming that certificate's key only (the check
applies to the TURN server's TLS connection as to https).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import Browsers, RoomPage, eventually, launch
from tests.e2e.test_browser_consultation import decodes_video_from
from tests.support.coturn import SECRET, Coturn, start_coturn
from tests.support.tls_certs import ScratchCa, ServerCert, write_private
from tests.support.webrtc_stats import AES_256_GCM, srtp_profile

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def turn_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    folder = tmp_path_factory.mktemp("turn-tls")
    return ScratchCa.create(folder).issue(folder / "turn.pem", folder / "turn-key.pem")


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory, turn_cert: ServerCert) -> Iterator[Coturn]:
    turn = start_coturn(tmp_path_factory.mktemp("coturn"), allow_loopback=True, cert=turn_cert)
    yield turn
    turn.stop()


def relay_node(tmp: Path, turn_url: str) -> Server:
    """A node handing out ``turn_url`` with credentials from coturn's secret."""
    secret = tmp / "turn.secret"
    write_private(secret, SECRET.encode())
    env = {"FORTROLIG_MEDIA__TURN_URLS": turn_url, "FORTROLIG_MEDIA__TURN_SECRET_FILE": str(secret)}
    return start_server(tmp, env)


@pytest.fixture
async def tls_browsers(tmp_path: Path, turn_cert: ServerCert) -> AsyncIterator[Browsers]:
    spki = f"--ignore-certificate-errors-spki-list={turn_cert.spki_sha256}"
    async with launch(tmp_path, [spki]) as holder:
        yield holder


async def relayed_consultation(server: Server, browsers: Browsers) -> tuple[RoomPage, RoomPage]:
    session = server.session(force_relay=True)
    practitioner = await browsers.open(session["practitioner_url"], "Dr. Ørsted")
    client = await browsers.open(session["client_url"], "Klient")
    await practitioner.wait_state("in_session", within=30)
    await client.wait_state("in_session", within=30)
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()
    await decodes_video_from(client, pid_p, limit=30)
    await decodes_video_from(practitioner, pid_c, limit=30)
    return practitioner, client


async def assert_relayed(page: RoomPage, protocol: str, tmp_path: Path) -> dict[str, Any]:
    """The page relays through TURN over ``protocol``; SRTP is AES-256-GCM."""
    assert await page.page.evaluate("window.fortrolig.iceTransportPolicy") == "relay"
    seen: dict[str, Any] = {}

    async def nominated() -> bool:
        # "connected" can come while the nominated pair's own state still reads "in-progress"
        # (its connectivity check answered, the stats not yet updated): wait for "succeeded".
        seen.update(await page.stats())
        selected = seen.get("selected")
        return selected is not None and selected.get("state") == "succeeded"

    await eventually(nominated, 10, "the selected candidate pair succeeds")
    stats = seen
    assert stats["iceTransportPolicy"] == "relay", stats
    selected = stats["selected"]
    assert selected["localCandidateType"] == "relay", selected
    assert selected["localRelayProtocol"] == protocol, selected
    assert srtp_profile(stats["transport"]["srtpCipher"]) == AES_256_GCM, stats["transport"]
    # No host or server-reflexive candidate of the page reached the server.
    for raw in page.to_server:
        msg = json.loads(raw)
        if msg.get("type") == "candidate" and msg.get("candidate"):
            assert " typ relay" in msg["candidate"], msg
    await page.screenshot(tmp_path, f"relay-{protocol}")
    return dict(selected)


async def test_relay_only_consultation_through_coturn_over_udp(
    coturn: Coturn, browsers: Browsers, tmp_path: Path
) -> None:
    node = relay_node(tmp_path, f"turn:127.0.0.1:{coturn.port}?transport=udp")
    try:
        practitioner, client = await relayed_consultation(node, browsers)
        for page in (practitioner, client):
            await assert_relayed(page, "udp", tmp_path)
    finally:
        stop_server(node)


async def test_relay_only_consultation_through_coturn_over_tls(
    coturn: Coturn, tls_browsers: Browsers, tmp_path: Path
) -> None:
    assert coturn.tls_port is not None
    node = relay_node(tmp_path, f"turns:127.0.0.1:{coturn.tls_port}?transport=tcp")
    try:
        practitioner, client = await relayed_consultation(node, tls_browsers)
        for page in (practitioner, client):
            await assert_relayed(page, "tls", tmp_path)
    finally:
        stop_server(node)

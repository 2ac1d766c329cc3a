"""Chromium holds a consultation with a node that serves HTTPS and WSS itself.

The test generates a CA and a certificate for 127.0.0.1/localhost (tests/support/tls_certs.py)
into tmp_path; the node serves it (``server.tls_cert_file``/``tls_key_file``). Chromium trusts
exactly that certificate's key with ``--ignore-certificate-errors-spki-list`` (no NSS database
to prepare, and any other certificate still fails); the command-line tools trust the CA through
SSL_CERT_FILE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import Browsers, launch
from tests.e2e.test_browser_consultation import decodes_video_from, receives_audio_from
from tests.support.tls_certs import ScratchCa, ServerCert
from tests.support.webrtc_stats import AES_256_GCM, srtp_profile

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def node_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScratchCa, ServerCert]:
    folder = tmp_path_factory.mktemp("node-tls")
    ca = ScratchCa.create(folder)
    return ca, ca.issue(folder / "node.pem", folder / "node-key.pem")


@pytest.fixture(scope="module")
def https_node(
    tmp_path_factory: pytest.TempPathFactory, node_cert: tuple[ScratchCa, ServerCert]
) -> Iterator[Server]:
    ca, cert = node_cert
    env = {
        "FORTROLIG_SERVER__TLS_CERT_FILE": str(cert.cert_file),
        "FORTROLIG_SERVER__TLS_KEY_FILE": str(cert.key_file),
    }
    srv = start_server(tmp_path_factory.mktemp("node"), env, ca_file=ca.cert_file)
    yield srv
    stop_server(srv)


@pytest.fixture
async def trusting_browsers(
    tmp_path: Path, node_cert: tuple[ScratchCa, ServerCert]
) -> AsyncIterator[Browsers]:
    spki = f"--ignore-certificate-errors-spki-list={node_cert[1].spki_sha256}"
    async with launch(tmp_path, [spki]) as holder:
        yield holder


async def test_consultation_over_https_and_wss(
    https_node: Server, trusting_browsers: Browsers, tmp_path: Path
) -> None:
    session = https_node.session()
    assert session["practitioner_url"].startswith("https://127.0.0.1:")
    practitioner = await trusting_browsers.new_page("Dr. Ørsted")
    response = await practitioner.page.goto(session["practitioner_url"])
    assert response is not None and response.ok
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    await trusting_browsers.prejoin(practitioner)
    client = await trusting_browsers.open(session["client_url"], "Klient")
    for page in (practitioner, client):
        await page.wait_state("in_session", within=30)
        assert await page.page.evaluate("location.protocol") == "https:"
        # A secure context: the page may open camera and microphone beyond localhost too.
        assert await page.page.evaluate("window.isSecureContext") is True
    for page in (practitioner, client):
        assert page.ws_urls and all(u.startswith("wss://127.0.0.1:") for u in page.ws_urls)
        assert page.server_messages("welcome"), "no welcome over wss"
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()
    await decodes_video_from(client, pid_p, limit=30)
    await decodes_video_from(practitioner, pid_c, limit=30)
    await receives_audio_from(practitioner, pid_c)
    for page in (practitioner, client):
        transport = (await page.stats())["transport"]
        assert srtp_profile(transport.get("srtpCipher")) == AES_256_GCM, transport
        await page.screenshot(tmp_path, "https")

"""A real `fortrolig serve` on TLS with a test CA, behind a trusted proxy, and what it refuses.

The CA and certificates are generated into tmp_path (tests/support/tls_certs.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from fortrolig.loadtests.participant import Participant
from tests.conftest import FORTROLIG, ROOT, Server, free_port, start_server, stop_server
from tests.support.tls_certs import ScratchCa

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ScratchCa:
    return ScratchCa.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, ca: ScratchCa) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("tls-node")
    ca.issue(tmp / "cert.pem", tmp / "key.pem", "first")
    env = {
        "FORTROLIG_SERVER__TLS_CERT_FILE": str(tmp / "cert.pem"),
        "FORTROLIG_SERVER__TLS_KEY_FILE": str(tmp / "key.pem"),
        "FORTROLIG_SERVER__TLS_RELOAD_INTERVAL_S": "0.5",
    }
    srv = start_server(tmp, env, ca_file=ca.cert_file)
    yield srv
    stop_server(srv)


def served_cert(port: int, ca: ScratchCa) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def port_of(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def test_https_with_hsts_and_links_on_the_https_url(tls_node: Server, ca: ScratchCa) -> None:
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    with urllib.request.urlopen(tls_node.base_url + "/healthz", context=context) as resp:
        assert resp.status == 200
        assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    session = tls_node.session()
    assert session["client_url"].startswith(tls_node.base_url + "/room/")


async def test_hello_and_welcome_over_wss(tls_node: Server, ca: ScratchCa) -> None:
    session = tls_node.session()
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    a = Participant(tls_node.ws_url, session["practitioner_token"], ssl_context=context)
    try:
        welcome = await a.connect()
        assert welcome["type"] == "welcome", welcome
    finally:
        await a.close()


def test_the_certificate_is_reloaded_after_the_files_change(
    tls_node: Server, ca: ScratchCa
) -> None:
    port = port_of(tls_node)
    cert_file = Path(tls_node.env["FORTROLIG_SERVER__TLS_CERT_FILE"])
    key_file = Path(tls_node.env["FORTROLIG_SERVER__TLS_KEY_FILE"])
    before = served_cert(port, ca)
    renewed = ca.issue(cert_file, key_file, "renewed")
    deadline = time.monotonic() + 10
    while served_cert(port, ca).serial_number != renewed.cert.serial_number:
        assert time.monotonic() < deadline, "the renewed certificate was not served"
        time.sleep(0.2)
    assert before.serial_number != renewed.cert.serial_number
    assert "TLS certificate reloaded" in tls_node.log_path.read_text()


def serve_refused(tmp: Path, env: dict[str, str], host: str = "127.0.0.1") -> str:
    """Run `fortrolig serve` expecting it to refuse its configuration (exit 2); its stderr."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FORTROLIG_")}
    cmd = [*FORTROLIG, "serve", "--host", host, "--port", str(free_port())]
    cmd += ["--data-dir", str(tmp / "data")]
    out = subprocess.run(
        cmd, env={**full, **env}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    return out.stderr


def test_a_key_file_others_may_read_stops_the_node(tmp_path: Path, ca: ScratchCa) -> None:
    ca.issue(tmp_path / "cert.pem", tmp_path / "key.pem")
    os.chmod(tmp_path / "key.pem", 0o644)
    env = {
        "FORTROLIG_SERVER__TLS_CERT_FILE": str(tmp_path / "cert.pem"),
        "FORTROLIG_SERVER__TLS_KEY_FILE": str(tmp_path / "key.pem"),
    }
    stderr = serve_refused(tmp_path, env)
    assert "key.pem is accessible by group/others (mode 0644)" in stderr


def test_an_http_public_url_on_all_addresses_is_refused_without_the_allow_flag(
    tmp_path: Path,
) -> None:
    stderr = serve_refused(tmp_path, {}, host="0.0.0.0")
    assert "server.public_url" in stderr and "allow_insecure_http" in stderr
    stderr = serve_refused(
        tmp_path, {"FORTROLIG_SERVER__PUBLIC_URL": "http://consult.example.eu"}, host="0.0.0.0"
    )
    assert "plain http" in stderr


async def _get(port: int, headers: dict[str, str], source: str) -> tuple[int, dict[str, str]]:
    """A raw HTTP/1.1 GET /healthz from ``source`` (a loopback address) to the node."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    lines = ["GET /healthz HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    head = raw.split("\r\n\r\n", 1)[0].split("\r\n")
    found = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), found


async def test_forwarded_headers_count_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    # 127.0.0.1 plays the proxy; 127.0.0.2 (also loopback) a client writing the headers itself.
    node = start_server(tmp_path, {"FORTROLIG_SERVER__TRUSTED_PROXIES": "127.0.0.1/32"})
    port = port_of(node)
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    try:
        status, headers = await _get(port, forwarded, "127.0.0.1")
        assert status == 200 and headers["Strict-Transport-Security"] == "max-age=31536000"
        status, headers = await _get(port, forwarded, "127.0.0.2")
        assert status == 200 and "Strict-Transport-Security" not in headers
        # Signaling through the proxy: the WebSocket upgrade works on the rewritten request.
        token = node.session()["practitioner_token"]
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(node.ws_url, headers=forwarded) as ws,
        ):
            await ws.send_json({"type": "hello", "v": 1, "token": token})
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await asyncio.sleep(0.2)  # the access log line is written after the response
    finally:
        stop_server(node)
    log = node.log_path.read_text()
    assert '198.51.100.7 "GET /healthz" 200' in log
    assert '127.0.0.2 "GET /healthz" 200' in log

"""The node's own TLS (reloaded when the files change) and its trust in reverse proxies."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from fortrolig.app.edge import forwarded_client, forwarded_scheme
from fortrolig.core.errors import ConfigError
from fortrolig.core.tls import ReloadingTls
from tests.support.tls_certs import ScratchCa

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCa:
    return ScratchCa.create(tmp_path)


@pytest.fixture
async def served(tmp_path: Path, ca: ScratchCa) -> AsyncIterator[tuple[ReloadingTls, int]]:
    """A TLS echo server on 127.0.0.1 using a ReloadingTls context."""
    ca.issue(tmp_path / "cert.pem", tmp_path / "key.pem", "first")
    tls = ReloadingTls(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hello, "127.0.0.1", 0, ssl=tls.context)
    yield tls, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def served_name(ca: ScratchCa, port: int, sni: str | None = None) -> str:
    """The common name of the certificate a new connection gets (verified against the CA)."""
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=sni or "127.0.0.1"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert await reader.read() == b"ok"
    writer.close()
    await writer.wait_closed()
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.rfc4514_string())


async def test_a_renewed_certificate_is_served_to_new_connections(
    served: tuple[ReloadingTls, int], ca: ScratchCa, tmp_path: Path
) -> None:
    tls, port = served
    assert await served_name(ca, port) == "CN=first"
    assert tls.check() is False  # nothing changed
    ca.issue(tmp_path / "cert.pem", tmp_path / "key.pem", "renewed")
    assert tls.check() is True and tls.reloads == 1
    # Without SNI (an IP address, as Chromium connects to https://127.0.0.1) and with it.
    assert await served_name(ca, port) == "CN=renewed"
    assert await served_name(ca, port, sni="localhost") == "CN=renewed"


async def test_a_half_replaced_pair_keeps_the_working_certificate(
    served: tuple[ReloadingTls, int], ca: ScratchCa, tmp_path: Path
) -> None:
    tls, port = served
    # The new certificate is in place, its key not yet (certbot writes one file, then the other).
    ca.issue(tmp_path / "cert.pem", tmp_path / "next-key.pem", "next")
    assert tls.check() is False
    assert await served_name(ca, port) == "CN=first"
    os.replace(tmp_path / "next-key.pem", tmp_path / "key.pem")
    assert tls.check() is True
    assert await served_name(ca, port) == "CN=next"


async def test_a_key_made_readable_by_others_is_not_reloaded(
    served: tuple[ReloadingTls, int], ca: ScratchCa, tmp_path: Path
) -> None:
    tls, port = served
    ca.issue(tmp_path / "cert.pem", tmp_path / "key.pem", "leaky")
    os.chmod(tmp_path / "key.pem", 0o644)
    assert tls.check() is False
    assert await served_name(ca, port) == "CN=first"


def test_a_key_file_others_may_read_is_refused_at_start(tmp_path: Path, ca: ScratchCa) -> None:
    ca.issue(tmp_path / "cert.pem", tmp_path / "key.pem")
    os.chmod(tmp_path / "key.pem", 0o640)
    with pytest.raises(ConfigError, match="accessible by group/others"):
        ReloadingTls(tmp_path / "cert.pem", tmp_path / "key.pem")
    os.chmod(tmp_path / "key.pem", 0o600)
    os.symlink(tmp_path / "key.pem", tmp_path / "link.pem")
    with pytest.raises(ConfigError, match="cannot open TLS key file"):
        ReloadingTls(tmp_path / "cert.pem", tmp_path / "link.pem")
    ca.issue(tmp_path / "other.pem", tmp_path / "other-key.pem")
    with pytest.raises(ConfigError, match="cannot load TLS certificate"):
        ReloadingTls(tmp_path / "cert.pem", tmp_path / "other-key.pem")


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.1.1.1", "198.51.100.7", "198.51.100.7"),
        # The left entries are whatever the client wrote: the right-most untrusted one counts.
        ("10.1.1.1", "1.2.3.4, 198.51.100.7, 10.2.2.2", "198.51.100.7"),
        ("10.1.1.1", "", "10.1.1.1"),
        ("10.1.1.1", "nonsense", "10.1.1.1"),
        ("::1", "[2001:db8::7]", "2001:db8::7"),
        # Not from a trusted proxy: the header is ignored.
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),
        (None, "198.51.100.7", None),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str | None, header: str, client: str | None
) -> None:
    assert forwarded_client(peer, header, PROXIES) == client


def test_forwarded_proto_is_believed_only_from_trusted_proxies() -> None:
    assert forwarded_scheme("10.1.1.1", "https", False, PROXIES) is True
    assert forwarded_scheme("10.1.1.1", "http, https", False, PROXIES) is True
    assert forwarded_scheme("10.1.1.1", "http", False, PROXIES) is False
    assert forwarded_scheme("203.0.113.9", "https", False, PROXIES) is False
    assert forwarded_scheme("203.0.113.9", "http", True, PROXIES) is True  # TLS here

"""Validation of what faces the network: TURN URLs, TLS files, trusted proxies, the public URL.

Used by :mod:`fortrolig.core.config`; kept apart so that module stays a readable size.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

from .config_rules import require

# RFC 7065: turn:host[:port][?transport=udp|tcp]; turns: is TLS over TCP (Chromium refuses
# turns: with transport=udp). A bracketed IPv6 literal is allowed as host.
_TURN_RE = re.compile(
    r"^(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def check_turn_url(url: str, key: str = "media.turn_urls") -> None:
    """Refuse a TURN URL that is not ``turn:`` (UDP/TCP) or ``turns:`` (TLS) per RFC 7065."""
    found = _TURN_RE.match(url)
    require(
        found is not None,
        key,
        f"{url!r} is not turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp]",
    )
    assert found is not None
    require(
        not (found["scheme"] == "turns" and found["transport"] == "udp"),
        key,
        f"{url!r}: turns: is TLS over TCP (transport=udp is not allowed)",
    )
    port = found["port"]
    require(port is None or 1 <= int(port) <= 65535, key, f"{url!r}: port must be in 1..65535")


def parse_networks(
    entries: tuple[str, ...], key: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``::1``) as networks; refuses anything else."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            require(False, key, f"{entry!r} is not an IP address or CIDR block")
    return tuple(networks)


def is_loopback_name(host: str) -> bool:
    """``localhost`` or a loopback IP address (brackets of an IPv6 literal allowed)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls_files(cert: Path | None, key: Path | None) -> None:
    """Certificate and key go together (both set: the node serves HTTPS/WSS itself)."""
    require(
        (cert is None) == (key is None),
        "server.tls_key_file" if cert is not None else "server.tls_cert_file",
        "server.tls_cert_file and server.tls_key_file go together",
    )


def check_transport_security(base_url: str, listen_host: str, allow_insecure_http: bool) -> None:
    """Refuse plain http toward anything but this machine unless explicitly allowed.

    Browsers give a page camera and microphone only on https (or on localhost), and the links
    the node builds carry bearer tokens: an http public URL, or an http node listening beyond
    loopback, is a mistake unless ``server.allow_insecure_http`` says it is intended (a lab).
    """
    parts = urlsplit(base_url)
    if parts.scheme == "https" or allow_insecure_http:
        return
    public_host = parts.hostname or ""
    require(
        is_loopback_name(public_host) and is_loopback_name(listen_host),
        "server.public_url",
        f"{base_url!r} is plain http and the node listens on {listen_host!r}: set "
        "server.public_url to the https URL clients open (TLS at a reverse proxy), or serve "
        "TLS (server.tls_cert_file / server.tls_key_file), or set "
        "server.allow_insecure_http = true (tests, a lab)",
    )

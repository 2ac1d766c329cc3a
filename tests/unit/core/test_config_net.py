"""Configuration of what faces the network: TURN URLs, TLS files, trusted proxies, plain http."""

from __future__ import annotations

from pathlib import Path

import pytest

from fortrolig.core.config import load_config
from fortrolig.core.errors import ConfigError

SECRET = {"FORTROLIG_MEDIA__TURN_SECRET_FILE": "/run/secrets/turn"}


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.eu:3478?transport=udp",
        "turn:turn.example.eu:3478?transport=tcp",
        "turns:turn.example.eu:443?transport=tcp",
        "turns:turn.example.eu",
        "turn:127.0.0.1:3478",
        "turn:[2001:db8::1]:3478?transport=udp",
    ],
)
def test_turn_urls_for_udp_tcp_and_tls_are_accepted(url: str) -> None:
    config = load_config(None, {**SECRET, "FORTROLIG_MEDIA__TURN_URLS": url})
    assert config.media.turn_urls == (url,)


@pytest.mark.parametrize(
    "url",
    [
        "turns:turn.example.eu:443?transport=udp",  # TLS is TCP
        "turn:turn.example.eu:3478?transport=sctp",
        "turn:turn.example.eu:99999",
        "stun:turn.example.eu:3478",
        "turn://turn.example.eu:3478",
        "turn:user@turn.example.eu",
        "turn:",
    ],
)
def test_bad_turn_urls_are_refused_naming_the_key(url: str) -> None:
    with pytest.raises(ConfigError, match=r"media\.turn_urls"):
        load_config(None, {**SECRET, "FORTROLIG_MEDIA__TURN_URLS": url})


def test_tls_cert_and_key_go_together_and_make_the_base_url_https() -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_key_file"):
        load_config(None, {"FORTROLIG_SERVER__TLS_CERT_FILE": "/etc/fortrolig/cert.pem"})
    with pytest.raises(ConfigError, match=r"server\.tls_cert_file"):
        load_config(None, {"FORTROLIG_SERVER__TLS_KEY_FILE": "/etc/fortrolig/key.pem"})
    config = load_config(
        None,
        {
            "FORTROLIG_SERVER__TLS_CERT_FILE": "/etc/fortrolig/cert.pem",
            "FORTROLIG_SERVER__TLS_KEY_FILE": "/etc/fortrolig/key.pem",
            "FORTROLIG_SERVER__HOST": "0.0.0.0",
        },
    )
    assert config.server.tls and config.server.base_url == "https://0.0.0.0:8750"
    assert config.server.tls_key_file == Path("/etc/fortrolig/key.pem")


def test_trusted_proxies_are_addresses_or_cidr_blocks() -> None:
    env = {"FORTROLIG_SERVER__TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1"}
    assert load_config(None, env).server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    for bad in ("proxy.example.eu", "10.0.0.0/33", "*"):
        with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
            load_config(None, {"FORTROLIG_SERVER__TRUSTED_PROXIES": bad})


@pytest.mark.parametrize(
    "env",
    [
        {"FORTROLIG_SERVER__HOST": "0.0.0.0"},  # links would be http://0.0.0.0:8750
        {"FORTROLIG_SERVER__HOST": "::"},
        {"FORTROLIG_SERVER__HOST": "10.0.0.5"},
        {"FORTROLIG_SERVER__HOST": "0.0.0.0", "FORTROLIG_SERVER__PUBLIC_URL": "http://x.eu"},
        # Listening on loopback behind a proxy that serves the world plain http.
        {"FORTROLIG_SERVER__PUBLIC_URL": "http://consult.example.eu"},
    ],
)
def test_plain_http_beyond_loopback_is_refused_unless_allowed(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"server\.public_url.*allow_insecure_http"):
        load_config(None, env)
    allowed = load_config(None, {**env, "FORTROLIG_SERVER__ALLOW_INSECURE_HTTP": "true"})
    assert allowed.server.allow_insecure_http


@pytest.mark.parametrize(
    "env",
    [
        {},  # the laptop default: http://127.0.0.1:8750
        {"FORTROLIG_SERVER__HOST": "::1", "FORTROLIG_SERVER__PUBLIC_URL": "http://[::1]:8750"},
        {"FORTROLIG_SERVER__PUBLIC_URL": "http://localhost:8750"},
        {"FORTROLIG_SERVER__HOST": "0.0.0.0", "FORTROLIG_SERVER__PUBLIC_URL": "https://c.eu"},
    ],
)
def test_loopback_http_or_an_https_public_url_starts(env: dict[str, str]) -> None:
    load_config(None, env)

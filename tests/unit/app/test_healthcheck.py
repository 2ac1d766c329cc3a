"""The container image's HEALTHCHECK: the URL it probes and its exit codes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fortrolig.app.healthcheck import healthz_url, main


def test_probes_loopback_for_a_wildcard_listen_address() -> None:
    public = {"FORTROLIG_SERVER__PUBLIC_URL": "https://consult.example.eu"}
    env = {**public, "FORTROLIG_SERVER__HOST": "0.0.0.0", "FORTROLIG_SERVER__PORT": "9000"}
    assert healthz_url(env) == "http://127.0.0.1:9000/healthz"
    assert healthz_url({**public, "FORTROLIG_SERVER__HOST": "::"}) == "http://[::1]:8750/healthz"
    assert (
        healthz_url({**public, "FORTROLIG_SERVER__HOST": "10.0.0.5"})
        == "http://10.0.0.5:8750/healthz"
    )


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_exit_codes(healthz_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"FORTROLIG_SERVER__PORT": str(healthz_port)}
    assert main(env) == 0
    monkeypatch.setattr(_Healthz, "status", 503)
    assert main(env) == 1
    assert main({"FORTROLIG_SERVER__PORT": "1"}, timeout_s=1) == 1  # nothing listens
    assert main({"FORTROLIG_SERVER__PORT": "70000"}) == 1  # refused by the config loader

"""Shared fixtures: a real `fortrolig serve` process on 127.0.0.1 and room/token helpers."""

from __future__ import annotations

import gc
import itertools
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aioice.ice
import asyncpg  # type: ignore[import-untyped]
import pytest

from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.support.postgres_server import PostgresUnavailable, TempPostgres

if TYPE_CHECKING:
    from tests.mailbox import Mailbox

ROOT = Path(__file__).resolve().parent.parent
FORTROLIG = [sys.executable, "-m", "fortrolig.app.cli"]


def browser_versions() -> list[str]:
    """What each browser the e2e tests drive says of its version (absent ones say so)."""
    lines = []
    for binary in (
        os.environ.get("FORTROLIG_CHROMIUM", "/usr/bin/chromium"),
        os.environ.get("FORTROLIG_FIREFOX", "/usr/bin/firefox-esr"),
    ):
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
            lines.append(out.stdout.strip() or out.stderr.strip() or f"{binary}: no version")
        except (OSError, subprocess.TimeoutExpired) as exc:
            lines.append(f"{binary}: {exc}")
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    """Name the browser build at the top of the run (also under ``-q``, which hides pytest's
    report header), so that a failure names the build it ran on."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in browser_versions():
            reporter.write_line(f"browser: {line}")


# `make test` runs the suite on two xdist workers (`-n 2 --dist loadgroup`). What runs media,
# browsers, clusters or containers (CPU-heavy, and measuring rates or timeouts while it runs)
# stays on one worker, one test after the other, as in a serial run; every other module is one
# unit of work, so its module-scoped node starts once, on whichever worker is free.
# Tests marked ``alone`` (an emulated link's timing, eight browsers) run afterwards by
# themselves, in a second pytest run of `make test` without workers.
SERIAL = (
    "e2e",
    "deploy",
    "integration/cluster",
    "integration/media",
    "integration/recording",
    "integration/loadtests",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's xdist group: ``serial`` for the heavy folders, else its module."""
    for item in items:
        rel = item.path.resolve().relative_to(ROOT / "tests").as_posix()
        serial = any(rel == d or rel.startswith(d + "/") for d in SERIAL)
        item.add_marker(pytest.mark.xdist_group("serial" if serial else rel))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage at each test's teardown, so that a socket, transport or subprocess a test
    forgot to close raises its ResourceWarning (an error) in that test, not in whichever later
    test happens to trigger the collection."""
    yield
    gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _loopback_only_ice() -> None:
    """Test clients offer only 127.0.0.1 as ICE host candidate (never this machine's eth0)."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running node: its base URL, data dir and process."""

    base_url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # what the node was started with

    @property
    def ws_url(self) -> str:
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url.removeprefix("https://") + "/ws"
        return self.base_url.replace("http://", "ws://") + "/ws"

    def session(
        self, max_participants: int | None = None, force_relay: bool = False
    ) -> dict[str, Any]:
        """A room with a practitioner and a client link, as `fortrolig session create --json`
        prints it, made over the node's HTTP API (the CLI costs a Python start per call; it is
        used where it does more: giving the dev practitioner a subscription when billing is
        enforced)."""
        enforced = self.env.get("FORTROLIG_BILLING__ENFORCE", "").lower() in ("1", "true", "on")
        if enforced or self.base_url.startswith("https://"):  # the CLI knows the test CA there
            return self.session_by_cli(max_participants, force_relay)
        key, _ = load_or_create_signing_keys(self.data_dir)
        access = TokenIssuer(key, "fortrolig", SystemClock()).issue(
            TokenKind.ACCESS, "dev-practitioner", Role.PRACTITIONER, ttl_s=900
        )
        body: dict[str, Any] = {}
        if max_participants is not None:
            body["max_participants"] = max_participants
        if force_relay:
            body["force_relay"] = True
        room = self._post("/api/v1/rooms", body, access)
        links = {
            role: self._post(f"/api/v1/rooms/{room['room_id']}/tokens", {"role": role}, access)
            for role in ("practitioner", "client")
        }
        return {
            "room_id": room["room_id"],
            "max_participants": room["max_participants"],
            "practitioner_url": links["practitioner"]["url"],
            "client_url": links["client"]["url"],
            "practitioner_token": links["practitioner"]["token"],
            "client_token": links["client"]["token"],
            "expires_at": min(links[r]["expires_at"] for r in links),
            "access_token": access,
        }

    def _post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def session_by_cli(
        self, max_participants: int | None = None, force_relay: bool = False
    ) -> dict[str, Any]:
        """`fortrolig session create --json` against this node."""
        cmd = [
            *FORTROLIG,
            "session",
            "create",
            "--json",
            "--data-dir",
            str(self.data_dir),
            "--base-url",
            self.base_url,
        ]
        if max_participants is not None:
            cmd += ["--max-participants", str(max_participants)]
        if force_relay:
            cmd.append("--force-relay")
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={**os.environ, **self.env},
        )
        return dict(json.loads(out.stdout))

    def metrics(self) -> dict[str, float]:
        """The node's /metrics as {'name{labels}': value} (with the node's bearer secret when
        it has ``metrics.token_file``; without one, a node answers loopback requests only)."""
        req = urllib.request.Request(self.base_url + "/metrics", headers=self.metrics_headers())
        with urllib.request.urlopen(req, timeout=5) as resp:
            text = resp.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def metrics_headers(self) -> dict[str, str]:
        """What a scraper of this node sends: its ``metrics.token_file`` secret, if any."""
        token_file = self.env.get("FORTROLIG_METRICS__TOKEN_FILE")
        if not token_file:
            return {}
        return {"Authorization": "Bearer " + Path(token_file).read_text().rstrip("\r\n")}

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels``."""
        total = 0.0
        for key, value in self.metrics().items():
            base, _, rest = key.partition("{")
            if base != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += value
        return total


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening TCP socket on 127.0.0.1:``port``
    (not some other process that took the port between free_port() and our bind)."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                return True
    return False


def start_server(
    tmp: Path,
    extra_env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    ca_file: Path | None = None,
    host: str = "127.0.0.1",
) -> Server:
    """A node on ``host`` (127.0.0.1 unless a test's own namespace gives it another); on https
    when ``extra_env`` names a TLS certificate, checked against ``ca_file`` (which
    ``session()`` also trusts, through SSL_CERT_FILE).

    A port chosen here may be taken by another worker's process before the node binds it; the
    node then exits, and it is started again on a new port (a /healthz answer alone could come
    from that other process)."""
    for attempt in range(3):
        try:
            return _start_server(tmp, extra_env, port=port, ca_file=ca_file, host=host)
        except PortTaken:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


class PortTaken(RuntimeError):
    """The node could not bind its port: another process holds it."""


def _start_server(
    tmp: Path,
    extra_env: dict[str, str] | None,
    *,
    port: int | None,
    ca_file: Path | None,
    host: str = "127.0.0.1",
) -> Server:
    port = port or free_port()
    tls = bool((extra_env or {}).get("FORTROLIG_SERVER__TLS_CERT_FILE"))
    if ca_file is not None:
        extra_env = {**(extra_env or {}), "SSL_CERT_FILE": str(ca_file)}
    data = tmp / "data"
    log_path = tmp / "server.log"
    env = {**os.environ, **(extra_env or {})}
    env.pop("FORTROLIG_CONFIG", None)
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [
                *FORTROLIG,
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    base = f"{'https' if tls else 'http'}://{host}:{port}"
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1, context=context):
                pass
            if listens(proc.pid, port):
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            text = log_path.read_text()
            if "address already in use" in text.lower():
                raise PortTaken(text)
            raise RuntimeError(f"server did not start: {text}")
        time.sleep(0.1)
    return Server(base, data, proc, log_path, dict(extra_env or {}))


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real node per test module."""
    srv = start_server(tmp_path_factory.mktemp("node"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    """A local SMTP server collecting what a node sends (pass ``mailbox.env`` to the node)."""
    from tests.mailbox import Mailbox  # here: tests.mailbox imports free_port from this module

    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    """One real PostgreSQL (Debian's binaries, temporary directory, free port) per session.

    Missing binaries fail the tests that need it (`make test` installs them): no skip.
    """
    try:
        server = TempPostgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_db_counter = itertools.count()


async def fresh_database(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """A fresh, empty database URL for ``request.param`` ("sqlite" or "postgresql")."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / (name + '.db')}"
    server: TempPostgres = request.getfixturevalue("pg_server")
    database = f"{name}_{next(_db_counter)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {database}")
    finally:
        await conn.close()
    return server.dsn_for(database)

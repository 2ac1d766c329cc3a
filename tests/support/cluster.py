"""Several real `fortrolig serve` nodes on loopback sharing a real Redis and PostgreSQL.

Every node gets the same signing keys and records keyring (as a deployment mounts the same
secret files on every node), its own data dir, region tag and node id. Timings are short so
failovers happen in seconds; each test may override them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import SystemClock
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import Server, start_server, stop_server
from tests.support.redis_server import TempRedis

PRACTITIONER = "dev-practitioner"
FAST = {
    "FORTROLIG_COORDINATION__HEARTBEAT_S": "0.5",
    "FORTROLIG_COORDINATION__NODE_TTL_S": "2",
    "FORTROLIG_COORDINATION__LEASE_TTL_S": "4",
    "FORTROLIG_COORDINATION__REDIS_TIMEOUT_S": "0.5",
    "FORTROLIG_COORDINATION__DRAIN_DEADLINE_S": "0",
    "FORTROLIG_MEDIA__WORKERS": "1",
}


@dataclass
class Node:
    """One node of the test cluster (its process may be stopped and started again)."""

    name: str
    region: str
    folder: Path
    env: dict[str, str]
    server: Server | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        assert self.server is not None
        return self.server.ws_url

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.proc.pid

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """GET ``path`` on this node: (status, parsed JSON body)."""
        import json

        req = urllib.request.Request(self.base_url + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post(self, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        """POST a JSON body with a Bearer token: (status, parsed JSON body)."""
        import json

        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def metric(self, name: str) -> float:
        assert self.server is not None
        return self.server.metric(name)


@dataclass
class TestCluster:
    """Nodes sharing one Redis and one PostgreSQL database of records."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    folder: Path
    redis: TempRedis
    records_url: str
    nodes: list[Node] = field(default_factory=list)
    seed: Path = field(init=False)

    def __post_init__(self) -> None:
        self.seed = self.folder / "seed"
        load_or_create_signing_keys(self.seed)
        FileKeyring.open(self.seed / "keys" / "records-keyring.json")

    def add(self, name: str, region: str, **env: str) -> Node:
        """Start a node named ``name`` in ``region``."""
        folder = self.folder / name
        keys = folder / "data" / "keys"
        shutil.copytree(self.seed / "keys", keys, dirs_exist_ok=True)
        os.chmod(folder / "data", 0o700)
        node_env = {
            **FAST,
            "FORTROLIG_SERVER__REGION": region,
            "FORTROLIG_COORDINATION__NODE_ID": name,
            "FORTROLIG_COORDINATION__REDIS_URL": self.redis.url,
            "FORTROLIG_RECORDS__DATABASE_URL": self.records_url,
            **env,
        }
        node = Node(name, region, folder, node_env)
        self.start(node)
        self.nodes.append(node)
        return node

    def start(self, node: Node) -> None:
        """(Re)start a node's process on a new port."""
        node.server = start_server(node.folder, node.env)

    def kill(self, node: Node) -> None:
        """SIGKILL: the node vanishes without a goodbye (a crash, a lost host)."""
        assert node.server is not None
        node.server.proc.send_signal(signal.SIGKILL)
        node.server.proc.wait(timeout=10)

    def freeze(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGSTOP)

    def thaw(self, node: Node) -> None:
        os.kill(node.pid, signal.SIGCONT)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.server is None:
                continue
            if node.server.proc.poll() is None:
                os.kill(node.pid, signal.SIGCONT)  # a frozen node cannot handle SIGTERM
                stop_server(node.server)

    def access_token(self, subject: str = PRACTITIONER) -> str:
        key, _ = load_or_create_signing_keys(self.seed)
        issuer = TokenIssuer(key, "fortrolig", SystemClock())
        return issuer.issue(TokenKind.ACCESS, subject, Role.PRACTITIONER, ttl_s=900)

    def create_room(self, via: Node, **body: Any) -> str:
        status, answer = via.post("/api/v1/rooms", body, self.access_token())
        assert status == 201, answer
        return str(answer["room_id"])

    def join_token(self, via: Node, room_id: str, role: str) -> str:
        status, answer = via.post(
            f"/api/v1/rooms/{room_id}/tokens", {"role": role}, self.access_token()
        )
        assert status == 201, answer
        return str(answer["token"])

    def owner_of(self, room_id: str, via: Node) -> str | None:
        status, body = via.get(f"/api/v1/rooms/{room_id}", self.access_token())
        assert status == 200, body
        return body.get("served_by")

    def node(self, name: str) -> Node:
        (found,) = [n for n in self.nodes if n.name == name]
        return found


@contextlib.asynccontextmanager
async def new_cluster(request: Any, tmp_path: Path) -> AsyncIterator[TestCluster]:
    """A fresh records database (PostgreSQL), a fresh Redis, and no nodes yet; everything
    stopped at the end."""
    from tests.conftest import fresh_database

    request.param = "postgresql"  # fresh_database reads the backend from the request
    url = await fresh_database(request, tmp_path, "records")
    redis = TempRedis(tmp_path)
    redis.start()
    cluster = TestCluster(tmp_path, redis, url)
    try:
        yield cluster
    finally:
        cluster.stop_all()
        redis.stop()

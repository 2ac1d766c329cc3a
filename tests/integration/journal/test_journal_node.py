"""The journal as wired into a real `fortrolig serve`: API, authorization, files, operator CLI.

The API tests share the module's node (``server``) and authenticate with real access tokens: the
dev practitioner's from ``fortrolig session create`` and others minted with the node's signing
key. The lifecycle test runs its own node so that it can stop it, run the operator commands on its
data directory, rotate the key-encryption key and start it again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from fortrolig.core.clock import SystemClock
from fortrolig.journal.export import read_zip
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind
from tests.conftest import FORTROLIG, ROOT, Server, start_server, stop_server
from tests.integration.signaling.test_rooms_api import assert_error
from tests.support.ws_client import load_server_key

ISSUER = "fortrolig"
DEV = "dev-practitioner"
J = "/api/journal"


@dataclass
class Caller:
    """One identity calling the journal API of a node."""

    server: Server
    http: aiohttp.ClientSession
    token: str | None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Status and JSON body of one request."""
        status, raw, _ = await self.raw(method, path, body)
        return status, json.loads(raw) if raw else None

    async def raw(
        self, method: str, path: str, body: Any = None
    ) -> tuple[int, bytes, CIMultiDictProxy[str]]:
        """Status, body bytes and headers of one request."""
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.server.base_url + path, **kwargs) as resp:
            return resp.status, await resp.read(), resp.headers

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """The JSON body of a request that must succeed with ``status``."""
        got, data = await self.call(method, path, body)
        assert got == status, data
        return data


def mint(server: Server, sub: str, role: Role = Role.PRACTITIONER) -> str:
    """An access token signed with the node's own key."""
    issuer = TokenIssuer(load_server_key(server), ISSUER, SystemClock())
    return issuer.issue(TokenKind.ACCESS, sub, role, ttl_s=900)


def fortrolig(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `fortrolig` command (not checked: callers assert the exit code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORTROLIG_")}
    return subprocess.run(
        [*FORTROLIG, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


def cli_json(*args: str) -> dict[str, Any]:
    """A `--json` operator command that must exit 0; its one JSON object."""
    done = fortrolig(*args, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def assert_clean_stop(node: Server) -> None:
    """SIGTERM closed the journal (retention task cancelled, store closed) without an error."""
    log = node.log_path.read_text()
    assert node.proc.returncode == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert not (node.data_dir / "journal.db-wal").exists()  # last connection closed cleanly


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def dev_token(server: Server) -> str:
    """The dev practitioner's access token, as `fortrolig session create` hands it out."""
    token: str = server.session()["access_token"]
    return token


@pytest.fixture
def dev(server: Server, http: aiohttp.ClientSession, dev_token: str) -> Caller:
    return Caller(server, http, dev_token)


async def new_client(caller: Caller, name: str = "Åse Ørsted") -> str:
    data = await caller.ok("POST", f"{J}/clients", {"name": name, "contact": "a@x.dk"}, 201)
    client_id: str = data["id"]
    return client_id


# --- the practitioner's flow ---------------------------------------------------------------------


async def test_practitioner_writes_reads_and_exports(dev: Caller) -> None:
    cid = await new_client(dev)
    note = await dev.ok("POST", f"{J}/clients/{cid}/notes", {"text": "Første samtale."}, 201)
    assert note["author"] == DEV and note["corrects"] is None
    addendum = await dev.ok(
        "POST", f"{J}/clients/{cid}/notes/{note['id']}/addenda", {"text": "Rettelse."}, 201
    )
    assert addendum["corrects"] == note["id"]

    journal = await dev.ok("GET", f"{J}/clients/{cid}?purpose=supervision")
    assert journal["client"]["name"] == "Åse Ørsted" and journal["client"]["contact"] == "a@x.dk"
    assert [(n["id"], n["text"]) for n in journal["notes"]] == [
        (note["id"], "Første samtale."),
        (addendum["id"], "Rettelse."),
    ]
    listing = await dev.ok("GET", f"{J}/clients")
    assert cid in [c["id"] for c in listing["clients"]]

    status, raw, headers = await dev.raw("GET", f"{J}/clients/{cid}/export.json")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    doc = json.loads(raw)
    assert (doc["format"], doc["version"], doc["client"]["id"]) == ("fortrolig.journal", 1, cid)
    assert [n["text"] for n in doc["notes"]] == ["Første samtale.", "Rettelse."]

    status, raw, headers = await dev.raw("GET", f"{J}/clients/{cid}/export.pdf")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert raw.startswith(b"%PDF") and raw.rstrip().endswith(b"%%EOF")

    status, raw, headers = await dev.raw("GET", f"{J}/export.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    members = read_zip(raw)
    assert {f"{cid}.json", f"{cid}.pdf"} <= set(members)
    assert json.loads(members[f"{cid}.json"])["notes"][1]["corrects"] == note["id"]


async def test_a_note_at_the_length_limit_passes_the_node(dev: Caller) -> None:
    # 100,000 characters are ~200 KB of JSON, above the node's 64 KiB default request limit.
    cid = await new_client(dev)
    text = "æ" * 100_000
    await dev.ok("POST", f"{J}/clients/{cid}/notes", {"text": text}, 201)
    journal = await dev.ok("GET", f"{J}/clients/{cid}")
    assert [n["text"] for n in journal["notes"]] == [text]
    status, body = await dev.call("POST", f"{J}/clients/{cid}/notes", {"text": text + "æ"})
    assert_error(status, body, 400, "invalid_entry")


async def test_bad_input_is_typed_and_changes_nothing(dev: Caller) -> None:
    cid = await new_client(dev)
    for body, code in [
        ({"text": ""}, "invalid_entry"),
        ({"text": 5}, "bad_field"),
        ({"text": "x", "author": "someone-else"}, "bad_field"),
        ({"text": "\ud800"}, "invalid_entry"),
        ({"text": "a\u0000b"}, "invalid_entry"),
        ([], "bad_json"),
    ]:
        status, data = await dev.call("POST", f"{J}/clients/{cid}/notes", body)
        assert_error(status, data, 400, code)
    status, data = await dev.call(
        "POST", f"{J}/clients/{cid}/notes/note_nosuchnote0/addenda", {"text": "x"}
    )
    assert_error(status, data, 404, "note_not_found")
    status, data = await dev.call("POST", f"{J}/clients", {"name": "A", "anonymous": True})
    assert_error(status, data, 400, "anonymous_client")
    status, data = await dev.call("DELETE", f"{J}/clients/{cid}")
    assert_error(status, data, 405, "method_not_allowed")
    assert (await dev.ok("GET", f"{J}/clients/{cid}"))["notes"] == []


# --- who may do what ------------------------------------------------------------------------------


async def test_another_practitioner_cannot_see_or_touch_the_journal(
    server: Server, http: aiohttp.ClientSession, dev: Caller
) -> None:
    cid = await new_client(dev)
    note = await dev.ok("POST", f"{J}/clients/{cid}/notes", {"text": "Fortroligt."}, 201)
    other = Caller(server, http, mint(server, "prac_other"))
    refused = [
        ("GET", f"{J}/clients/{cid}", None),
        ("POST", f"{J}/clients/{cid}/notes", {"text": "indbrud"}),
        ("POST", f"{J}/clients/{cid}/notes/{note['id']}/addenda", {"text": "indbrud"}),
        ("PUT", f"{J}/clients/{cid}/hold", {"hold": True, "reason": "indbrud"}),
        ("GET", f"{J}/clients/{cid}/hold", None),
        ("GET", f"{J}/clients/{cid}/export.json", None),
        ("GET", f"{J}/clients/{cid}/export.pdf", None),
    ]
    for method, path, body in refused:
        status, data = await other.call(method, path, body)
        # Indistinguishable from a client that does not exist: ids cannot be probed.
        assert_error(status, data, 404, "client_not_found")
        assert data["error"]["message"] == f"no client {cid!r}"
    assert (await other.ok("GET", f"{J}/clients"))["clients"] == []
    status, raw, _ = await other.raw("GET", f"{J}/export.zip")
    assert status == 200 and read_zip(raw) == {}
    # Nothing changed for the owner.
    journal = await dev.ok("GET", f"{J}/clients/{cid}")
    assert [n["text"] for n in journal["notes"]] == ["Fortroligt."]
    assert journal["client"]["hold"] is False


async def test_a_client_role_token_is_403_on_every_route(
    server: Server, http: aiohttp.ClientSession, dev: Caller
) -> None:
    cid = await new_client(dev)
    client_role = Caller(server, http, mint(server, "someone", Role.CLIENT))
    for method, path, body in [
        ("GET", f"{J}/clients", None),
        ("POST", f"{J}/clients", {"name": "X"}),
        ("GET", f"{J}/clients/{cid}", None),
        ("POST", f"{J}/clients/{cid}/notes", {"text": "x"}),
        ("GET", f"{J}/clients/{cid}/export.json", None),
        ("GET", f"{J}/export.zip", None),
    ]:
        status, data = await client_role.call(method, path, body)
        assert_error(status, data, 403, "journal_forbidden")


async def test_no_or_bad_token_is_401(server: Server, http: aiohttp.ClientSession) -> None:
    anonymous = Caller(server, http, None)
    for method, path in [("GET", f"{J}/clients"), ("GET", f"{J}/export.zip")]:
        status, data = await anonymous.call(method, path)
        assert_error(status, data, 401, "token_missing")
    status, data = await Caller(server, http, "not.a.token").call("GET", f"{J}/clients")
    assert_error(status, data, 401, "token_malformed")


# --- files in the data directory ----------------------------------------------------------------


async def test_journal_files_are_private_and_in_the_data_dir(server: Server, dev: Caller) -> None:
    await new_client(dev)  # the journal has written something
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700  # the node created it
    keys = server.data_dir / "keys"
    keyring = keys / "journal-keyring.json"
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    db = server.data_dir / "journal.db"
    assert db.is_file() and stat.S_IMODE(db.stat().st_mode) == 0o600
    # SQLite gives the WAL the main file's mode.
    wal = server.data_dir / "journal.db-wal"
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    # Personal data is only ciphertext in the file.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        blobs = b"".join(row[0] for row in conn.execute("SELECT name_ct FROM clients"))
    conn.close()
    assert {"clients", "notes", "audit", "client_keys"} <= tables
    for raw in (blobs, db.read_bytes(), wal.read_bytes()):
        assert "Ørsted".encode() not in raw and b"a@x.dk" not in raw


# --- the operator's lifecycle -------------------------------------------------------------------


async def test_operator_commands_and_key_rotation_across_restarts(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    node = start_server(tmp_path)
    data_dir = str(node.data_dir)
    try:
        me = Caller(node, http, mint(node, DEV))
        cid = await new_client(me, "Karen Blixen")
        note = await me.ok("POST", f"{J}/clients/{cid}/notes", {"text": "Før rotation."}, 201)

        # Rotation while the node runs: it re-reads the keyring and keeps reading.
        rotated = cli_json("keys", "rotate", "--data-dir", data_dir)
        assert rotated == {"kek_version": 2, "rewrapped": 1, "unchanged": 0}
        journal = await me.ok("GET", f"{J}/clients/{cid}")
        assert [n["text"] for n in journal["notes"]] == ["Før rotation."]
        await me.ok("POST", f"{J}/clients/{cid}/notes", {"text": "Efter rotation."}, 201)
    finally:
        stop_server(node)
    assert_clean_stop(node)

    verified = cli_json("audit", "verify", "--data-dir", data_dir)
    # client.create, note.append, keys.rotate, journal.read, note.append
    assert (verified["ok"], verified["checked"], verified["head"]["seq"]) == (True, 5, 5)
    text = fortrolig("audit", "verify", "--data-dir", data_dir)
    assert text.returncode == 0 and text.stdout.startswith("audit log OK"), text
    due = cli_json("journal", "retention", "--dry-run", "--data-dir", data_dir)
    assert due == {"dry_run": True, "retention_years": 5, "due": [], "erased": 0}
    text = fortrolig("journal", "retention", "--dry-run", "--data-dir", data_dir)
    assert text.returncode == 0 and text.stdout.strip() == "would erase 0 journal(s)", text
    rotated = cli_json("keys", "rotate", "--data-dir", data_dir)
    assert rotated == {"kek_version": 3, "rewrapped": 1, "unchanged": 0}

    node = start_server(tmp_path)
    try:
        me = Caller(node, http, mint(node, DEV))
        journal = await me.ok("GET", f"{J}/clients/{cid}")
        assert journal["client"]["name"] == "Karen Blixen"
        assert [n["text"] for n in journal["notes"]] == ["Før rotation.", "Efter rotation."]
        assert journal["notes"][0]["id"] == note["id"]
    finally:
        stop_server(node)
    assert_clean_stop(node)
    keyring = json.loads((tmp_path / "data" / "keys" / "journal-keyring.json").read_text())
    assert keyring["current"] == 3 and sorted(keyring["keks"]) == ["1", "2", "3"]

    # An edited audit row is caught, with exit code 1.
    db = tmp_path / "data" / "journal.db"
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2")
    conn.close()
    broken = fortrolig("audit", "verify", "--data-dir", data_dir, "--json")
    assert broken.returncode == 1, broken
    report = json.loads(broken.stdout)
    assert (report["ok"], report["first_bad_seq"], report["checked"]) == (False, 2, 1)


def test_operator_commands_never_create_a_journal(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    for args in (["audit", "verify"], ["journal", "retention", "--dry-run"], ["keys", "rotate"]):
        done = fortrolig(*args, "--data-dir", str(missing))
        assert done.returncode == 2 and done.stderr.startswith("fortrolig: config_error: "), done
        assert done.stdout == ""
        assert "does not exist" in done.stderr
    assert not missing.exists()


async def test_read_purposes_and_hold_reasons_over_http(dev: Caller) -> None:
    cid = await new_client(dev)
    status, data = await dev.call("GET", f"{J}/clients/{cid}?purpose=her+divorce", None)
    assert_error(status, data, 400, "invalid_purpose")
    await dev.ok("PUT", f"{J}/clients/{cid}/hold", {"hold": True, "reason": "Klage, sag 12"})
    await dev.ok("PUT", f"{J}/clients/{cid}/hold", {"hold": False})
    history = await dev.ok("GET", f"{J}/clients/{cid}/hold?purpose=complaint")
    assert [(c["hold"], c["reason"]) for c in history["changes"]] == [
        (True, "Klage, sag 12"),
        (False, None),
    ]
    status, data = await dev.call("PUT", f"{J}/clients/{cid}/hold", {"hold": True, "reason": 7})
    assert status == 400, data
    assert (await dev.ok("GET", f"{J}/clients/{cid}"))["client"]["hold"] is False

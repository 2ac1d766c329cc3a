"""`fortrolig processing-record`: the art. 30 record follows the configuration it is made from."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from fortrolig.app.cli import main
from fortrolig.app.processing_record import build_record, render_markdown
from fortrolig.core.config import load_config
from fortrolig.core.errors import ConfigError

NOW = "2026-12-04T12:00:00.000000Z"
CONFIGURED = """
[server]
data_dir = "{data}"
region = "eu-west"
public_url = "https://consult.example.eu"
trusted_proxies = ["10.0.0.2"]
[coordination]
redis_url = "rediss://coord.internal:6380/0"
default_regions = ["eu-west", "eu-central"]
[journal]
database_url = "postgresql://fortrolig:s3cretpw@db.internal:5433/journal"
retention_years = 7
[smtp]
host = "smtp.example.eu"
from_address = "no-reply@example.eu"
[eid]
issuer = "https://broker.example.dk/op"
client_id = "fortrolig"
client_secret_file = "/run/secrets/eid"
[media]
turn_urls = ["turns:turn.example.eu:443?transport=tcp"]
turn_secret_file = "/run/secrets/turn"
[billing]
enforce = true
[privacy]
controller_name = "Psykologhuset ApS"
dpo_contact = "dpo@psykologhuset.dk"
billing_provider = "Betal A/S"
backup_retention_days = 30
"""


def _configured(tmp_path: Path) -> Path:
    path = tmp_path / "fortrolig.toml"
    path.write_text(CONFIGURED.format(data=tmp_path / "data"), encoding="utf-8")
    return path


def _roles(doc: dict[str, Any]) -> dict[str, Any]:
    return {r["role"]: r["where"] for r in doc["recipients"]}


def _retention(doc: dict[str, Any]) -> dict[str, str]:
    return {r["data"].split(" (")[0]: r["period"] for r in doc["retention"]}


def test_the_default_node_and_its_placeholders(tmp_path: Path) -> None:
    config = load_config(None, {}, {"server.data_dir": tmp_path})
    doc = build_record(config, NOW)
    assert (doc["format"], doc["version"], doc["generated_at"]) == (
        "fortrolig.processing_record",
        1,
        NOW,
    )
    assert doc["controller"]["name"] == {"value": None, "config_key": "privacy.controller_name"}
    assert doc["node"]["region"] == "eu-north" and doc["node"]["allowed_regions"] == ["eu-north"]
    assert _roles(doc) == {
        "journal database": f"SQLite file {tmp_path / 'journal.db'}",
        "records database": f"SQLite file {tmp_path / 'records.db'}",
        "accounts database": f"SQLite file {tmp_path / 'accounts.db'}",
    }
    assert _retention(doc)["journal"].startswith("5 years after the latest note")
    assert "not declared" in _retention(doc)["backups of the journal"]
    ids = {c["id"]: c for c in doc["data_categories"]}
    assert ids["recordings"]["collected"] is True and ids["recordings"]["special_category"]
    assert "journal" in _retention(doc)["recordings"]
    off = load_config(None, {}, {"server.data_dir": tmp_path, "media.recording": False})
    off_ids = {c["id"]: c for c in build_record(off, NOW)["data_categories"]}
    assert off_ids["recordings"]["collected"] is False
    assert ids["health_notes"]["special_category"] is True
    assert "subscription" not in ids
    assert any("AEAD_AES_256_GCM" in m for m in doc["security_measures"])
    assert any(
        m.startswith("transport: plain HTTP, loopback only") for m in doc["security_measures"]
    )
    md = render_markdown(doc)
    assert "_(not configured: set `privacy.controller_name`)_" in md


def test_the_record_changes_with_the_configuration(tmp_path: Path) -> None:
    before = build_record(load_config(None, {}, {"server.data_dir": tmp_path}), NOW)
    config = load_config(_configured(tmp_path), {})
    doc = build_record(config, NOW)
    assert doc != before
    assert doc["controller"]["name"]["value"] == "Psykologhuset ApS"
    assert doc["controller"]["dpo_contact"]["value"] == "dpo@psykologhuset.dk"
    assert doc["node"]["region"] == "eu-west"
    assert doc["node"]["allowed_regions"] == ["eu-west", "eu-central"]
    assert doc["node"]["public_url"] == "https://consult.example.eu"
    assert _roles(doc) == {
        "journal database": "PostgreSQL db.internal:5433/journal",
        "records database": f"SQLite file {tmp_path / 'data' / 'records.db'}",
        "accounts database": f"SQLite file {tmp_path / 'data' / 'accounts.db'}",
        "coordination (Redis)": "coord.internal:6380",
        "SMTP relay": "smtp.example.eu:587",
        "eID broker": "broker.example.dk",
        "billing provider": "Betal A/S",
        "TURN relay": "turn.example.eu:443",
    }
    retention = _retention(doc)
    assert retention["journal"].startswith("7 years after the latest note")
    assert retention["backups of the journal"] == "30 days (declared)"
    assert retention["pending eID logins"] == "600 s"
    ids = {c["id"]: c for c in doc["data_categories"]}
    assert "subscription" in ids and "no CPR numbers" in ids["identity"]["detail"]
    assert "relayed by the TURN servers" in ids["media_in_transit"]["where"]
    purposes = [p["purpose"] for p in doc["purposes"]]
    assert any("eID" in p for p in purposes) and any("billing" in p for p in purposes)
    measures = "\n".join(doc["security_measures"])
    assert "reverse proxies 10.0.0.2" in measures and "Redis over TLS" in measures
    assert "STARTTLS" in measures and "TURN: ephemeral credentials" in measures
    text = json.dumps(doc) + render_markdown(doc)
    assert "s3cretpw" not in text and "fortrolig:" not in text  # no credentials, no user
    assert "Psykologhuset ApS" in render_markdown(doc)


def test_privacy_keys_are_validated(tmp_path: Path) -> None:
    for overrides in (
        {"privacy.controller_name": "a\x07b"},
        {"privacy.backup_retention_days": "-1"},
        {"privacy.backup_retention_days": "99999"},
        {"privacy.controller_name": "x" * 301},
        {"privacy.controler_name": "typo"},
    ):
        with pytest.raises(ConfigError, match="privacy"):
            load_config(None, {}, overrides)


def test_the_command_prints_or_writes_and_refuses_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_configured(tmp_path))
    assert main(["processing-record", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["node"]["region"] == "eu-west"
    out = tmp_path / "record.md"
    assert main(["processing-record", "--config", config, "--format", "md", "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("# Record of processing activities")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    before = out.read_bytes()
    for argv, code in (
        (["--format", "docx"], "unsupported_format"),
        (["--out", str(out)], "output_exists"),
        (["--out", str(tmp_path / "missing" / "r.json")], "output_unwritable"),
    ):
        assert main(["processing-record", "--config", config, *argv]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(f"fortrolig: {code}: ")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fortrolig.toml", "record.md"]

"""Configuration layering, type conversion, validation and secret files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from fortrolig.core.config import (
    Config,
    EidConfig,
    JournalConfig,
    MediaConfig,
    ServerConfig,
    load_config,
    read_secret_file,
)
from fortrolig.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fortrolig.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(match: str, *args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(*args, **kwargs)
    assert info.value.code == "config_error" and info.value.fault == "server"
    return info.value


def test_defaults() -> None:
    config = load_config(None, {})
    assert config == Config()
    assert config.server.port == 8750
    assert config.server.data_dir == Path("./data")
    assert config.server.base_url == "http://127.0.0.1:8750"
    assert config.media.ice_host_addresses == ("127.0.0.1",)
    assert config.media.turn_secret_file is None
    assert config.rooms.default_max_participants == 2
    assert config.journal == JournalConfig(
        database_url="", retention_years=5, keyring_path=None, retention_interval_s=86_400.0
    )


def test_layers_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[server]\nport = 9000\nhost = "0.0.0.0"\nregion = "eu-west"\n'
        'public_url = "https://consult.example.eu"\n'
        "[signaling]\nheartbeat_s = 5\n",
    )
    env = {"FORTROLIG_SERVER__PORT": "9100", "FORTROLIG_SERVER__REGION": "eea-north"}
    config = load_config(path, env, {"server.port": 9200})
    assert config.server.port == 9200  # override > env > file
    assert config.server.region == "eea-north"  # env > file
    assert config.server.host == "0.0.0.0"  # file > default
    assert config.signaling.heartbeat_s == 5.0 and isinstance(config.signaling.heartbeat_s, float)
    assert config.server.log_level == "info"  # default


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[auth]\nissuer = 'node-a'\n")
    assert load_config(None, {"FORTROLIG_CONFIG": str(path)}).auth.issuer == "node-a"


def test_env_type_conversion() -> None:
    env = {
        "FORTROLIG_MEDIA__ICE_HOST_ADDRESSES": "127.0.0.1, ::1",
        "FORTROLIG_MEDIA__STUN_URLS": "",
        "FORTROLIG_MEDIA__TURN_URLS": "turn:t.example.eu:3478,turns:t.example.eu:5349",
        "FORTROLIG_MEDIA__TURN_SECRET_FILE": "/run/secrets/turn",
        "FORTROLIG_SERVER__DATA_DIR": "/var/lib/fortrolig",
        "FORTROLIG_SIGNALING__RATE_LIMIT_PER_S": "2.5",
        "FORTROLIG_AUTH__CLOCK_SKEW_S": "10",
    }
    config = load_config(None, env)
    assert config.media.ice_host_addresses == ("127.0.0.1", "::1")
    assert config.media.stun_urls == ()
    assert config.media.turn_urls == ("turn:t.example.eu:3478", "turns:t.example.eu:5349")
    assert config.media.turn_secret_file == Path("/run/secrets/turn")
    assert config.server.data_dir == Path("/var/lib/fortrolig")
    assert config.signaling.rate_limit_per_s == 2.5
    assert config.auth.clock_skew_s == 10


def test_toml_lists_and_optional_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[media]\nice_host_addresses = ["10.0.0.5", "fd00::5"]\n'
        'stun_urls = ["stun:stun.example.eu:3478"]\nturn_secret_file = ""\n',
    )
    media = load_config(path, {}).media
    assert media.ice_host_addresses == ("10.0.0.5", "fd00::5")
    assert media.stun_urls == ("stun:stun.example.eu:3478",)
    assert media.turn_secret_file is None


def test_overrides_accept_strings_and_paths(tmp_path: Path) -> None:
    config = load_config(None, {}, {"server.port": "9001", "server.data_dir": tmp_path})
    assert config.server.port == 9001 and config.server.data_dir == tmp_path


def test_public_url() -> None:
    assert ServerConfig(host="::1", port=1).base_url == "http://[::1]:1"
    assert ServerConfig(public_url="https://x.example.eu/").base_url == "https://x.example.eu"


# --- journal ---------------------------------------------------------------------------------


def test_journal_from_environment() -> None:
    env = {
        "FORTROLIG_JOURNAL__DATABASE_URL": "postgresql://fortrolig@db.example.eu:5432/journal",
        "FORTROLIG_JOURNAL__RETENTION_YEARS": "10",
        "FORTROLIG_JOURNAL__KEYRING_PATH": "/run/secrets/journal-keyring.json",
        "FORTROLIG_JOURNAL__RETENTION_INTERVAL_S": "3600",
    }
    journal = load_config(None, env).journal
    assert journal.database_url == "postgresql://fortrolig@db.example.eu:5432/journal"
    assert journal.retention_years == 10
    assert journal.keyring_path == Path("/run/secrets/journal-keyring.json")
    assert journal.retention_interval_s == 3600.0


def test_journal_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[journal]\ndatabase_url = "sqlite:///var/lib/fortrolig/j.db"\nretention_years = 7\n'
        'keyring_path = ""\nretention_interval_s = 43200\n',
    )
    journal = load_config(path, {}).journal
    assert journal.database_url == "sqlite:///var/lib/fortrolig/j.db"
    assert journal.retention_years == 7 and journal.keyring_path is None
    assert journal.retention_interval_s == 43_200.0


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sqlite:///abs/journal.db",
        "sqlite://rel/journal.db",
        "postgres://h/db",
        "postgresql://h",
    ],
)
def test_journal_database_urls(url: str) -> None:
    assert load_config(None, {}, {"journal.database_url": url}).journal.database_url == url


def test_journal_unknown_key(tmp_path: Path) -> None:
    config_error(
        r"journal\.retention: unknown key", write(tmp_path, "[journal]\nretention = 5\n"), {}
    )
    config_error(
        "FORTROLIG_JOURNAL__DB_URL|journal.db_url", None, {"FORTROLIG_JOURNAL__DB_URL": "x"}
    )


def test_journal_retention_message_names_the_rule() -> None:
    error = config_error(r"journal\.retention_years", None, {}, {"journal.retention_years": 4})
    assert "at least five years" in error.message


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_table(tmp_path: Path) -> None:
    config_error("database", write(tmp_path, "[database]\nurl = 'x'\n"), {})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    config_error("server.prot", write(tmp_path, "[server]\nprot = 9000\n"), {})


def test_top_level_value_in_file(tmp_path: Path) -> None:
    config_error("port", write(tmp_path, "port = 9000\n"), {})


@pytest.mark.parametrize(
    "name",
    ["FORTROLIG_SERVER__PROT", "FORTROLIG_PORT", "FORTROLIG_DB__URL", "FORTROLIG_SERVER_PORT"],
)
def test_unknown_environment_variable(name: str) -> None:
    config_error("FORTROLIG_|server.prot", None, {name: "1"})


def test_other_environment_variables_are_ignored() -> None:
    assert load_config(None, {"HOME": "/root", "FORTROLIGX": "1"}) == Config()


@pytest.mark.parametrize("key", ["server.prot", "port", "nosection.port"])
def test_unknown_override(key: str) -> None:
    config_error("unknown", None, {}, {key: 1})


# --- wrong types and values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[server]\nport = "9000"\n', "server.port"),
        ("[server]\nport = 9000.0\n", "server.port"),
        ("[server]\nport = true\n", "server.port"),
        ("[server]\nhost = 1\n", "server.host"),
        ("[signaling]\nheartbeat_s = true\n", "signaling.heartbeat_s"),
        ("[signaling]\nheartbeat_s = nan\n", "signaling.heartbeat_s"),
        ('[media]\nice_host_addresses = "127.0.0.1"\n', "media.ice_host_addresses"),
        ("[media]\nice_host_addresses = [1]\n", "media.ice_host_addresses"),
        ("[media]\nturn_secret_file = 5\n", "media.turn_secret_file"),
        ('[server]\ndata_dir = ""\n', "server.data_dir"),
        ('[journal]\nretention_years = "5"\n', "journal.retention_years"),
        ("[journal]\nretention_years = 5.5\n", "journal.retention_years"),
        ("[journal]\ndatabase_url = 1\n", "journal.database_url"),
    ],
)
def test_wrong_type_in_file(tmp_path: Path, toml: str, key: str) -> None:
    config_error(key.replace(".", r"\."), write(tmp_path, toml), {})


def test_toml_strings_are_strict_but_env_strings_convert(tmp_path: Path) -> None:
    assert load_config(None, {"FORTROLIG_SERVER__PORT": "9000"}).server.port == 9000
    config_error(r"server\.port", None, {"FORTROLIG_SERVER__PORT": "nine"})
    config_error(r"signaling\.heartbeat_s", None, {"FORTROLIG_SIGNALING__HEARTBEAT_S": "inf"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("server.port", 70000),
        ("server.port", -1),
        ("server.host", ""),
        ("server.region", "us-east-1"),
        ("server.region", "europe"),
        ("server.region", "eu-"),
        ("server.region", "EU-NORTH"),
        ("server.log_level", "verbose"),
        ("server.public_url", "ftp://x"),
        ("signaling.heartbeat_s", 0),
        ("signaling.handshake_timeout_s", -1),
        ("signaling.rate_burst", 0),
        ("signaling.max_message_bytes", 100),
        ("signaling.chat_max_bytes", 70000),
        ("auth.join_token_ttl_s", 301),
        ("auth.access_token_ttl_s", 0),
        ("auth.issuer", ""),
        ("auth.clock_skew_s", -1),
        ("rooms.default_max_participants", 1),
        ("rooms.max_participants_limit", 9),
        ("media.ice_host_addresses", "localhost"),
        ("media.ice_host_addresses", ""),
        ("media.stun_urls", "http://stun.example.eu"),
        ("media.turn_urls", "stun:x"),
        ("media.min_bitrate_bps", 0),
        ("media.workers", -1),
        ("media.keyframe_min_interval_ms", -1),
        ("journal.retention_years", 4),
        ("journal.retention_years", 0),
        ("journal.retention_years", 51),
        ("journal.retention_interval_s", 0),
        ("journal.retention_interval_s", 59),
        ("journal.retention_interval_s", 604_801),
        ("journal.database_url", "/var/lib/fortrolig/journal.db"),
        ("journal.database_url", "postgresq://h/db"),
        ("journal.database_url", "mysql://h/db"),
        ("journal.database_url", "sqlite://"),
        ("journal.database_url", "sqlite:///"),
        ("journal.database_url", "sqlite:///var/lib/"),
        ("journal.database_url", "postgresql://"),
        ("journal.keyring_path", 5),
    ],
)
def test_invalid_values(key: str, value: object) -> None:
    config_error(key.replace(".", r"\."), None, {}, {key: value})


def test_room_size_ordering() -> None:
    config_error(
        r"rooms\.default_max_participants",
        None,
        {},
        {"rooms.default_max_participants": 5, "rooms.max_participants_limit": 4},
    )


def test_bitrate_ordering() -> None:
    config_error(r"media\.max_bitrate_bps", None, {}, {"media.max_bitrate_bps": 50_000})


def test_turn_needs_a_secret_file() -> None:
    with pytest.raises(ConfigError, match="turn_secret_file"):
        MediaConfig(turn_urls=("turn:t.example.eu",))


def test_allowed_regions() -> None:
    for region in ("eu-north", "eu-central-1", "eea-west", "no-east", "is-1", "li-1"):
        assert load_config(None, {}, {"server.region": region}).server.region == region


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    config_error("cannot read", tmp_path / "missing.toml", {})
    config_error("not valid TOML", write(tmp_path, "[server\n"), {})


# --- secret files ----------------------------------------------------------------------------


def secret(tmp_path: Path, data: bytes, mode: int) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_secret_file(tmp_path: Path) -> None:
    assert read_secret_file(secret(tmp_path, b"s" * 32 + b"\n", 0o600)) == b"s" * 32
    assert read_secret_file(secret(tmp_path, b"k" * 40, 0o400)) == b"k" * 40


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o660])
def test_secret_file_readable_by_others(tmp_path: Path, mode: int) -> None:
    with pytest.raises(ConfigError, match="group/others"):
        read_secret_file(secret(tmp_path, b"s" * 64, mode))


def test_short_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shorter than 32"):
        read_secret_file(secret(tmp_path, b"s" * 31 + b"\n", 0o600))


def test_missing_secret_or_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret_file(tmp_path / "nope")
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        read_secret_file(folder)


def test_secret_symlink_refused(tmp_path: Path) -> None:
    target = secret(tmp_path, b"s" * 64, 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret_file(link)


def test_invites_and_smtp_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(None, {})
    assert config.invites.ttl_s == 86_400
    assert config.smtp.host == "" and not config.smtp.enabled and config.smtp.starttls
    path = write(
        tmp_path,
        '[invites]\nttl_s = 3600\n[smtp]\nhost = "mail.example.eu"\nport = 587\n'
        'from_address = "noreply@example.eu"\nusername = "fortrolig"\n'
        'password_file = "/run/secrets/smtp"\n',
    )
    config = load_config(path, {})
    assert config.invites.ttl_s == 3600
    assert config.smtp.enabled and config.smtp.password_file == Path("/run/secrets/smtp")
    local = load_config(
        None,
        {
            "FORTROLIG_SMTP__HOST": "127.0.0.1",
            "FORTROLIG_SMTP__STARTTLS": "false",
            "FORTROLIG_SMTP__FROM_ADDRESS": "noreply@example.eu",
        },
    )
    assert local.smtp.enabled and not local.smtp.starttls


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FORTROLIG_INVITES__TTL_S": "299"}, "invites.ttl_s"),
        ({"FORTROLIG_INVITES__TTL_S": "604801"}, "invites.ttl_s"),
        ({"FORTROLIG_INVITES__CODE_TTL_S": "60"}, "invites.code_ttl_s: unknown key"),
        ({"FORTROLIG_SMTP__HOST": "mail.example.eu"}, "smtp.from_address: required"),
        ({"FORTROLIG_SMTP__FROM_ADDRESS": "Fortrolig <a@b.eu>"}, "smtp.from_address"),
        ({"FORTROLIG_SMTP__PORT": "0"}, "smtp.port"),
        ({"FORTROLIG_SMTP__TIMEOUT_S": "0.5"}, "smtp.timeout_s"),
        ({"FORTROLIG_SMTP__USERNAME": "u"}, "smtp.password_file"),
        ({"FORTROLIG_SMTP__PASSWORD_FILE": "/run/secrets/smtp"}, "smtp.password_file"),
        (
            {
                "FORTROLIG_SMTP__HOST": "mail.example.eu",
                "FORTROLIG_SMTP__FROM_ADDRESS": "a@example.eu",
                "FORTROLIG_SMTP__STARTTLS": "false",
            },
            "smtp.starttls: may be false only",
        ),
        (
            {
                "FORTROLIG_SMTP__HOST": "localhost",
                "FORTROLIG_SMTP__FROM_ADDRESS": "a@example.eu",
                "FORTROLIG_SMTP__STARTTLS": "false",
                "FORTROLIG_SMTP__USERNAME": "u",
                "FORTROLIG_SMTP__PASSWORD_FILE": "/run/secrets/smtp",
            },
            "smtp.starttls: authentication needs STARTTLS",
        ),
        ({"FORTROLIG_SMTP__STARTTLS": "maybe"}, "smtp.starttls"),
    ],
)
def test_invites_and_smtp_validation(env: dict[str, str], match: str) -> None:
    config_error(match, None, env)


EID = {
    "FORTROLIG_EID__ISSUER": "https://broker.example.eu",
    "FORTROLIG_EID__CLIENT_ID": "fortrolig",
    "FORTROLIG_EID__CLIENT_SECRET_FILE": "/run/secrets/eid",
}


def test_eid_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(None, {})
    assert config.eid == EidConfig() and not config.eid.enabled
    assert config.eid.client_auth == "client_secret_basic" and not config.eid.allow_cpr
    assert not config.eid.allow_insecure_loopback
    assert config.eid.id_token_algs == ("RS256", "PS256", "ES256")
    path = write(
        tmp_path,
        '[server]\npublic_url = "https://fortrolig.example.eu/"\n'
        '[eid]\nissuer = "https://broker.example.eu"\nclient_id = "fortrolig"\n'
        'client_auth = "private_key_jwt"\nprivate_key_file = "/run/secrets/eid.pem"\n'
        'scopes = ["profile"]\n'
        'acr_values = ["https://data.gov.dk/concept/core/nsis/loa/Substantial"]\n'
        'min_acr = "https://data.gov.dk/concept/core/nsis/loa/High"\n'
        'id_token_algs = ["ES256"]\n',
    )
    eid = load_config(path, {}).eid
    assert eid.enabled and eid.private_key_file == Path("/run/secrets/eid.pem")
    assert eid.scopes == ("profile",) and eid.id_token_algs == ("ES256",)
    assert eid.callback_url("https://fortrolig.example.eu/") == (
        "https://fortrolig.example.eu/eid/callback"
    )
    env = {**EID, "FORTROLIG_EID__REDIRECT_URI": "https://other.example.eu/cb"}
    assert load_config(None, env).eid.callback_url("https://x.example.eu") == (
        "https://other.example.eu/cb"
    )
    loopback = {
        **EID,
        "FORTROLIG_EID__ISSUER": "http://127.0.0.1:9999",
        "FORTROLIG_EID__ALLOW_INSECURE_LOOPBACK": "true",
        "FORTROLIG_EID__ALLOW_CPR": "true",
        "FORTROLIG_EID__SCOPES": "profile,ssn",
    }
    eid = load_config(None, loopback).eid
    assert eid.enabled and eid.allow_cpr and eid.scopes == ("profile", "ssn")


def test_eid_derived_values(tmp_path: Path) -> None:
    eid = load_config(None, EID).eid
    assert eid.callback_url("https://fortrolig.example.eu/") == (
        "https://fortrolig.example.eu/eid/callback"
    )
    assert eid.scope == "openid" and eid.client_secret_file == Path("/run/secrets/eid")


@pytest.mark.parametrize(
    "env",
    [
        {"FORTROLIG_EID__PRIVATE_KEY_ALG": "HS256"},
        {"FORTROLIG_EID__SCOPES": 'pro"file'},
        {"FORTROLIG_EID__NAME_CLAIM": ""},
        {"FORTROLIG_EID__ISSUER": "https://user@broker.example.eu"},
    ],
)
def test_eid_relying_party_rules_are_checked_when_the_config_loads(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"config key eid\."):
        load_config(None, {**EID, **env})


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"FORTROLIG_EID__ISSUER": "https://broker.example.eu"}, "eid.client_id: .* go together"),
        ({"FORTROLIG_EID__CLIENT_ID": "fortrolig"}, "eid.issuer: .* go together"),
        ({**EID, "FORTROLIG_EID__ISSUER": "http://broker.example.eu"}, "eid.issuer: must be an"),
        (
            {
                **EID,
                "FORTROLIG_EID__ISSUER": "http://broker.example.eu",
                "FORTROLIG_EID__ALLOW_INSECURE_LOOPBACK": "true",
            },
            "eid.issuer",
        ),
        ({**EID, "FORTROLIG_EID__ISSUER": "http://127.0.0.1:9999"}, "eid.issuer"),
        (
            {**EID, "FORTROLIG_EID__REDIRECT_URI": "http://fortrolig.example.eu/eid/callback"},
            "eid.redirect_uri",
        ),
        ({**EID, "FORTROLIG_EID__CLIENT_SECRET_FILE": ""}, "eid.client_secret_file: required"),
        (
            {**EID, "FORTROLIG_EID__CLIENT_AUTH": "private_key_jwt"},
            "eid.private_key_file: required",
        ),
        ({**EID, "FORTROLIG_EID__CLIENT_AUTH": "client_secret_post"}, "eid.client_auth"),
        ({**EID, "FORTROLIG_EID__ID_TOKEN_ALGS": "RS256,HS256"}, "eid.id_token_algs"),
        ({**EID, "FORTROLIG_EID__ID_TOKEN_ALGS": "none"}, "eid.id_token_algs"),
        ({**EID, "FORTROLIG_EID__ID_TOKEN_ALGS": ""}, "eid.id_token_algs"),
        ({**EID, "FORTROLIG_EID__SCOPES": "profile,ssn"}, "eid.scopes: 'ssn' .* allow_cpr"),
        ({**EID, "FORTROLIG_EID__MIN_ACR": "urn:other"}, "eid.min_acr"),
        ({**EID, "FORTROLIG_EID__PENDING_TTL_S": "0"}, "eid.pending_ttl_s"),
        ({**EID, "FORTROLIG_EID__SKEW_S": "-1"}, "eid.skew_s"),
        ({**EID, "FORTROLIG_EID__ALLOW_CPR": "perhaps"}, "eid.allow_cpr"),
        ({**EID, "FORTROLIG_EID__CPR": "1"}, "eid.cpr: unknown key"),
    ],
)
def test_eid_validation(env: dict[str, str], match: str) -> None:
    config_error(match, None, env)


def test_cluster_sections_from_the_environment() -> None:
    config = load_config(
        None,
        {
            "FORTROLIG_RECORDS__DATABASE_URL": "postgresql://fortrolig@db:5432/fortrolig",
            "FORTROLIG_COORDINATION__REDIS_URL": "redis://fortrolig@redis:6379/0",
            "FORTROLIG_COORDINATION__REDIS_PASSWORD_FILE": "/run/secrets/redis_password",
            "FORTROLIG_COORDINATION__DEFAULT_REGIONS": "eu-north,no-east",
            "FORTROLIG_COORDINATION__NODE_ID": "node-1.eu-north",
        },
    )
    assert config.records.database_url.startswith("postgresql://")
    assert config.coordination.default_regions == ("eu-north", "no-east")
    assert config.coordination.redis_password_file == Path("/run/secrets/redis_password")
    assert (config.coordination.heartbeat_s, config.coordination.lease_ttl_s) == (1.0, 20.0)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("FORTROLIG_COORDINATION__REDIS_URL", "http://redis:6379", "coordination.redis_url"),
        ("FORTROLIG_COORDINATION__DEFAULT_REGIONS", "eu-north,us-east", "default_regions"),
        ("FORTROLIG_COORDINATION__NODE_ID", "Node 1", "coordination.node_id"),
        ("FORTROLIG_COORDINATION__NODE_TTL_S", "1", "coordination.node_ttl_s"),
        ("FORTROLIG_COORDINATION__LEASE_TTL_S", "2", "coordination.lease_ttl_s"),
        ("FORTROLIG_COORDINATION__REDIS_PASSWORD_FILE", "/x", "redis_password_file"),
        ("FORTROLIG_RECORDS__DATABASE_URL", "mysql://db", "records.database_url"),
    ],
)
def test_cluster_settings_that_cannot_work_are_refused(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {key: value})
    assert named in str(info.value)


# --- edge, metrics, lockout (issue 18) ----------------------------------------------------------


def test_edge_and_metrics_keys_from_the_environment(tmp_path: Path) -> None:
    env = {
        "FORTROLIG_EDGE__BODY_TIMEOUT_S": "5",
        "FORTROLIG_EDGE__MAX_CONNECTIONS_PER_ADDRESS": "10",
        "FORTROLIG_EDGE__MAX_WEBSOCKETS_PER_ADDRESS": "4",
        "FORTROLIG_METRICS__LISTEN": "[::1]:9750",
        "FORTROLIG_METRICS__TOKEN_FILE": str(tmp_path / "token"),
        "FORTROLIG_ACCOUNTS__LOCKOUT_BASE_S": "60",
    }
    config = load_config(None, env)
    assert config.edge.body_timeout_s == 5.0 and config.edge.header_timeout_s == 10.0
    assert config.metrics.listen_address == ("::1", 9750)
    assert config.metrics.token_file == tmp_path / "token"
    assert config.accounts.lockout_base_s == 60.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("edge.body_timeout_s", 0.5),
        ("edge.header_timeout_s", 301.0),
        ("edge.max_connections_per_address", 5000),  # above max_connections
        ("edge.max_websockets_per_address", 65),  # above max_connections_per_address
        ("metrics.listen", "9750"),
        ("metrics.listen", "host:port"),
        ("accounts.lockout_threshold", 1),
    ],
)
def test_edge_metrics_and_lockout_values_are_validated(key: str, value: object) -> None:
    config_error(key.replace(".", r"\."), None, {}, {key: value})

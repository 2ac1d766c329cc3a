"""Configuration: defaults, then a TOML file, then the environment, then CLI overrides.

Every layer is converted to the field types of the frozen dataclasses below and validated before
the server starts. Unknown tables, keys and ``FORTROLIG_`` variables are errors, so a typo never
silently falls back to a default. Secrets are read from files (see :func:`read_secret_file`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fortrolig.core.config_cluster import CoordinationConfig, RecordsConfig
from fortrolig.core.config_edge import EdgeConfig as EdgeConfig  # re-exported: config sections
from fortrolig.core.config_edge import MetricsConfig as MetricsConfig
from fortrolig.core.config_eid import EidConfig as EidConfig  # re-exported: a config section
from fortrolig.core.config_net import (
    check_tls_files,
    check_transport_security,
    check_turn_url,
    is_loopback_name,
    parse_networks,
)
from fortrolig.core.config_privacy import PrivacyConfig as PrivacyConfig  # a config section
from fortrolig.core.config_rules import REGION_PREFIXES, fail, is_eu_region, require
from fortrolig.core.errors import ConfigError

ENV_PREFIX = "FORTROLIG_"
"""Environment variables ``FORTROLIG_<SECTION>__<KEY>`` set configuration keys."""

CONFIG_PATH_ENV = "FORTROLIG_CONFIG"
"""Names the TOML file when ``load_config`` gets no path; the one non-key ``FORTROLIG_`` var."""

MIN_SECRET_BYTES = 32
LOG_LEVELS = frozenset({"debug", "info", "warning", "error", "critical"})
_STUN_SCHEMES = ("stun:", "stuns:")


_fail = fail
_require = require


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the node listens, what it stores, its region tag, and how it meets the web.

    With ``tls_cert_file`` and ``tls_key_file`` the node serves HTTPS/WSS itself (the files are
    re-read when they change); behind a reverse proxy, ``trusted_proxies`` lists the proxies'
    addresses or CIDR blocks whose ``X-Forwarded-For``/``-Proto`` headers count.
    """

    host: str = "127.0.0.1"
    port: int = 8750
    data_dir: Path = Path("./data")
    public_url: str = ""
    region: str = "eu-north"
    log_level: str = "info"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_reload_interval_s: float = 5.0
    trusted_proxies: tuple[str, ...] = ()
    hsts_max_age_s: int = 31_536_000
    allow_insecure_http: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.host), "server.host", "must not be empty")
        _require(0 <= self.port <= 65535, "server.port", "must be in 0..65535")
        _require(
            self.public_url == "" or self.public_url.startswith(("http://", "https://")),
            "server.public_url",
            "must be empty or start with http:// or https://",
        )
        _require(
            is_eu_region(self.region),
            "server.region",
            f"{self.region!r} is not an EU/EEA region (allowed prefixes: {REGION_PREFIXES})",
        )
        _require(self.log_level in LOG_LEVELS, "server.log_level", f"one of {sorted(LOG_LEVELS)}")
        check_tls_files(self.tls_cert_file, self.tls_key_file)
        _require(
            0.5 <= self.tls_reload_interval_s <= 3600,
            "server.tls_reload_interval_s",
            "must be in 0.5..3600",
        )
        parse_networks(self.trusted_proxies, "server.trusted_proxies")
        _require(0 <= self.hsts_max_age_s <= 63_072_000, "server.hsts_max_age_s", "0..63072000")
        check_transport_security(self.base_url, self.host, self.allow_insecure_http)

    @property
    def tls(self) -> bool:
        """Whether the node serves HTTPS/WSS itself."""
        return self.tls_cert_file is not None

    @property
    def base_url(self) -> str:
        """The public URL without a trailing slash; ``http(s)://{host}:{port}`` when unset."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SignalingConfig:
    """WebSocket limits, heartbeat and rate limits."""

    handshake_timeout_s: float = 10.0
    max_message_bytes: int = 65536
    heartbeat_s: float = 20.0
    rate_limit_per_s: float = 20.0
    rate_burst: int = 60
    chat_max_bytes: int = 4096
    chat_rate_per_s: float = 5.0
    chat_burst: int = 10

    def __post_init__(self) -> None:
        for name in ("handshake_timeout_s", "heartbeat_s", "rate_limit_per_s", "chat_rate_per_s"):
            _require(getattr(self, name) > 0, f"signaling.{name}", "must be positive")
        for name in ("rate_burst", "chat_burst"):
            _require(getattr(self, name) >= 1, f"signaling.{name}", "must be at least 1")
        _require(self.max_message_bytes >= 1024, "signaling.max_message_bytes", "must be >= 1024")
        _require(
            1 <= self.chat_max_bytes <= min(self.max_message_bytes, 65536),
            "signaling.chat_max_bytes",
            "must be in 1..min(max_message_bytes, 65536)",
        )


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Token issuer and lifetimes (seconds)."""

    issuer: str = "fortrolig"
    join_token_ttl_s: int = 300
    access_token_ttl_s: int = 900
    resume_token_ttl_s: int = 120
    clock_skew_s: int = 30

    def __post_init__(self) -> None:
        _require(bool(self.issuer), "auth.issuer", "must not be empty")
        # Join tokens are bearer links: the security baseline caps them at five minutes.
        _require(1 <= self.join_token_ttl_s <= 300, "auth.join_token_ttl_s", "must be in 1..300")
        for name in ("access_token_ttl_s", "resume_token_ttl_s"):
            _require(getattr(self, name) >= 1, f"auth.{name}", "must be positive")
        _require(0 <= self.clock_skew_s <= 300, "auth.clock_skew_s", "must be in 0..300")


MAX_PARTICIPANTS_CAP = 8


@dataclass(frozen=True, slots=True)
class RoomsConfig:
    """Room sizes: 2 <= default_max_participants <= max_participants_limit <= 8."""

    default_max_participants: int = 2
    max_participants_limit: int = MAX_PARTICIPANTS_CAP
    # How long a participant whose connection dropped keeps its place (0: it leaves at once);
    # capped at auth.resume_token_ttl_s / 2, the least its last resume token has left.
    rejoin_grace_s: int = 60

    def __post_init__(self) -> None:
        _require(0 <= self.rejoin_grace_s <= 600, "rooms.rejoin_grace_s", "must be in 0..600")
        _require(
            2 <= self.default_max_participants <= self.max_participants_limit,
            "rooms.default_max_participants",
            "must be in 2..max_participants_limit",
        )
        _require(
            self.max_participants_limit <= MAX_PARTICIPANTS_CAP,
            "rooms.max_participants_limit",
            f"must be at most {MAX_PARTICIPANTS_CAP}",
        )


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """ICE addresses, STUN/TURN servers, bitrate bounds and media workers."""

    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret_file: Path | None = None
    turn_credential_ttl_s: int = 3600
    max_bitrate_bps: int = 2_500_000
    min_bitrate_bps: int = 100_000
    keyframe_min_interval_ms: int = 300
    # Read media sockets on a native thread instead of the event loop (see docs/performance.md).
    io_thread: bool = True
    # 0: one media worker process per core; 1: the SFU runs inside the signaling process
    # (a laptop, the tests); N >= 2: N worker processes.
    workers: int = 0
    # Record consultations when every participant consents (docs/journal.md "Recordings"):
    # the encrypted files are written under <data_dir>/recordings, then kept in the journal.
    recording: bool = True

    def __post_init__(self) -> None:
        _require(bool(self.ice_host_addresses), "media.ice_host_addresses", "must not be empty")
        for address in self.ice_host_addresses:
            _require(_is_ip(address), "media.ice_host_addresses", f"{address!r} is not an IP")
        for url in self.stun_urls:
            _require(url.startswith(_STUN_SCHEMES), "media.stun_urls", f"{url!r} must start stun:")
        for url in self.turn_urls:
            check_turn_url(url)
        _require(
            not self.turn_urls or self.turn_secret_file is not None,
            "media.turn_secret_file",
            "required when turn_urls is set (ephemeral TURN credentials)",
        )
        _require(
            60 <= self.turn_credential_ttl_s <= 86_400,
            "media.turn_credential_ttl_s",
            "must be between 60 and 86400",
        )
        _require(self.min_bitrate_bps > 0, "media.min_bitrate_bps", "must be positive")
        _require(
            self.max_bitrate_bps >= self.min_bitrate_bps,
            "media.max_bitrate_bps",
            "must be >= min_bitrate_bps",
        )
        _require(self.keyframe_min_interval_ms >= 0, "media.keyframe_min_interval_ms", ">= 0")
        _require(0 <= self.workers <= 64, "media.workers", "must be in 0..64 (0 = one per core)")


MIN_RETENTION_YEARS = 5
"""Danish rules for practitioners' records: keep a journal at least five years."""
MAX_RETENTION_YEARS = 50
_DB_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """Practitioner accounts: their database and the keyring sealing TOTP secrets.

    An empty ``database_url`` is SQLite at ``<data_dir>/accounts.db`` (subscriptions share it).
    """

    database_url: str = ""
    keyring_path: Path | None = None
    # Failed sign-ins (docs/accounts.md): from the lockout_threshold-th failure on a key, refused
    # for lockout_base_s, then twice as long each time, up to 15 minutes.
    lockout_threshold: int = 5
    lockout_base_s: float = 1.0

    def __post_init__(self) -> None:
        _require(
            _is_database_url(self.database_url),
            "accounts.database_url",
            f"must be empty (SQLite in the data dir) or a URL starting with one of {_DB_SCHEMES}",
        )
        _require(
            3 <= self.lockout_threshold <= 20, "accounts.lockout_threshold", "must be in 3..20"
        )
        _require(
            0.5 <= self.lockout_base_s <= 900, "accounts.lockout_base_s", "must be in 0.5..900"
        )


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """The subscription gate and the billing provider's webhook.

    ``enforce`` makes every session need an active subscription; it is on by itself as soon as
    a webhook secret is configured. A self-hosted single practice runs without it.
    """

    enforce: bool = False
    webhook_secret_files: tuple[str, ...] = ()
    sweep_interval_s: float = 2.0

    @property
    def enforced(self) -> bool:
        """Whether sessions and exports are gated on the subscription."""
        return self.enforce or bool(self.webhook_secret_files)

    def __post_init__(self) -> None:
        _require(
            0.5 <= self.sweep_interval_s <= 60,
            "billing.sweep_interval_s",
            "must be between 0.5 and 60 (suspension must end live sessions within seconds)",
        )


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """The encrypted journal: its database, keyring, and retention.

    An empty ``database_url`` is SQLite in the data directory; ``keyring_path`` None is the key
    file in ``<data_dir>/keys``.
    """

    database_url: str = ""
    retention_years: int = MIN_RETENTION_YEARS
    keyring_path: Path | None = None
    retention_interval_s: float = 86_400.0

    def __post_init__(self) -> None:
        _require(
            _is_database_url(self.database_url),
            "journal.database_url",
            f"must be empty (SQLite in the data dir) or a URL starting with one of {_DB_SCHEMES}",
        )
        _require(
            MIN_RETENTION_YEARS <= self.retention_years <= MAX_RETENTION_YEARS,
            "journal.retention_years",
            f"must be in {MIN_RETENTION_YEARS}..{MAX_RETENTION_YEARS} "
            "(journals must be kept at least five years)",
        )
        _require(
            60 <= self.retention_interval_s <= 7 * 86_400,
            "journal.retention_interval_s",
            "must be between 60 and 604800 (one week)",
        )


def _is_database_url(url: str) -> bool:
    """Empty, ``sqlite:///abs.db``/``sqlite://rel.db``, or a PostgreSQL URL with a host part."""
    if url == "":
        return True
    scheme = next((s for s in _DB_SCHEMES if url.startswith(s)), None)
    if scheme is None:
        return False  # a typo like "postgresq://" must not become a SQLite file of that name
    rest = url.removeprefix(scheme)
    if scheme == "sqlite://":
        return bool(rest.strip("/")) and not rest.endswith("/")  # names a file, not a folder
    return bool(rest)


MIN_INVITE_TTL_S = 300
MAX_INVITE_TTL_S = 7 * 86_400


@dataclass(frozen=True, slots=True)
class InvitesConfig:
    """Client invite links: how long one stays redeemable (seconds).

    The e-mail code that follows (6 digits, 10 minutes, 5 attempts) is fixed by the security
    baseline, not configured.
    """

    ttl_s: int = 86_400
    time_zone: str = "Europe/Copenhagen"
    """The practice's IANA time zone: how invite e-mails and pages write times."""

    def __post_init__(self) -> None:
        _require(_known_zone(self.time_zone), "invites.time_zone", "must be an IANA time zone")
        _require(
            MIN_INVITE_TTL_S <= self.ttl_s <= MAX_INVITE_TTL_S,
            "invites.ttl_s",
            f"must be in {MIN_INVITE_TTL_S}..{MAX_INVITE_TTL_S} (five minutes to one week)",
        )


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


_EMAIL_RE = re.compile(r"^[^@\s<>\x00-\x1f\x7f]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def is_email_address(text: str) -> bool:
    """A plain ``local@domain.tld`` address (no display name, no spaces or control characters)."""
    return len(text) <= 254 and bool(_EMAIL_RE.match(text))


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address."""
    return is_loopback_name(host)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The SMTP server that sends invites and e-mail codes; an empty ``host`` sends nothing.

    Invite e-mails carry a bearer link, so the connection must use STARTTLS unless the server is
    on this machine (a local relay). Authentication needs STARTTLS too; the password comes from a
    private file.
    """

    host: str = ""
    port: int = 587
    from_address: str = ""
    starttls: bool = True
    username: str = ""
    password_file: Path | None = None
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _require(1 <= self.port <= 65535, "smtp.port", "must be in 1..65535")
        _require(1 <= self.timeout_s <= 120, "smtp.timeout_s", "must be in 1..120")
        _require(
            self.from_address == "" or is_email_address(self.from_address),
            "smtp.from_address",
            "must be a plain e-mail address (local@domain.tld)",
        )
        _require(
            (self.username == "") == (self.password_file is None),
            "smtp.password_file",
            "username and password_file go together",
        )
        if not self.host:
            return
        _require(bool(self.from_address), "smtp.from_address", "required when smtp.host is set")
        _require(
            self.starttls or is_loopback_host(self.host),
            "smtp.starttls",
            "may be false only for a server on this machine (invite e-mails carry bearer links)",
        )
        _require(
            self.starttls or not self.username,
            "smtp.starttls",
            "authentication needs STARTTLS",
        )

    @property
    def enabled(self) -> bool:
        """Whether e-mail can be sent at all."""
        return bool(self.host)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, one attribute per TOML table."""

    server: ServerConfig = field(default_factory=ServerConfig)
    signaling: SignalingConfig = field(default_factory=SignalingConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    invites: InvitesConfig = field(default_factory=InvitesConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    eid: EidConfig = field(default_factory=EidConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


SECTIONS: Mapping[str, type[Any]] = {
    "server": ServerConfig,
    "signaling": SignalingConfig,
    "auth": AuthConfig,
    "rooms": RoomsConfig,
    "media": MediaConfig,
    "journal": JournalConfig,
    "accounts": AccountsConfig,
    "billing": BillingConfig,
    "invites": InvitesConfig,
    "smtp": SmtpConfig,
    "eid": EidConfig,
    "records": RecordsConfig,
    "coordination": CoordinationConfig,
    "edge": EdgeConfig,
    "metrics": MetricsConfig,
    "privacy": PrivacyConfig,
}

# --- type conversion -------------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected a boolean, got {value!r}")


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value.strip().replace("_", ""))
    raise ValueError(f"expected an integer, got {value!r}")


def _to_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


def _to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _to_path(value: object) -> Path:
    if isinstance(value, str | os.PathLike) and os.fspath(value):
        return Path(value)
    raise ValueError(f"expected a non-empty path, got {value!r}")


def _to_optional_path(value: object) -> Path | None:
    return None if value is None or value == "" else _to_path(value)


def _to_str_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _converter(tp: Any) -> Callable[[object], Any]:
    simple: dict[Any, Callable[[object], Any]] = {
        bool: _to_bool,
        int: _to_int,
        float: _to_float,
        str: _to_str,
        Path: _to_path,
    }
    if tp in simple:
        return simple[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args == (str, ...):
        return _to_str_tuple
    if origin in (typing.Union, types.UnionType) and set(args) == {Path, type(None)}:
        return _to_optional_path
    raise TypeError(f"unsupported config field type {tp!r}")


def _field_types(section: str) -> dict[str, Any]:
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_TEXTUAL_TYPES = (str, Path, Path | None)


def _convert(section: str, key: str, value: object, *, from_text: bool) -> Any:
    """Convert ``value`` to the field's type; strings parse only if ``from_text`` (env, CLI)."""
    dotted = f"{section}.{key}"
    types_ = _field_types(section) if section in SECTIONS else {}
    if key not in types_:
        _fail(dotted, "unknown key")
    tp = types_[key]
    if isinstance(value, str) and not from_text and tp not in _TEXTUAL_TYPES:
        _fail(dotted, f"expected {_type_name(tp)}, not a string")
    try:
        return _converter(tp)(value)
    except ValueError as exc:
        _fail(dotted, str(exc))


def _type_name(tp: Any) -> str:
    return "a list of strings" if typing.get_origin(tp) is tuple else f"a {tp.__name__}"


# --- layers ----------------------------------------------------------------------------------

Layer = Iterator[tuple[str, str, object, bool]]
"""(section, key, raw value, value may be text to parse) from one configuration source."""


def _toml_layer(path: Path) -> Layer:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, table in data.items():
        if section not in SECTIONS:
            _fail(section, "unknown table")
        if not isinstance(table, dict):
            _fail(section, "must be a table")
        for key, value in table.items():
            yield section, key, value, False


def _env_layer(env: Mapping[str, str]) -> Layer:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_PATH_ENV:
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or section not in SECTIONS:
            raise ConfigError(f"environment variable {name} names no configuration key")
        yield section, key, value, True


def _override_layer(overrides: Mapping[str, Any]) -> Layer:
    for dotted, value in overrides.items():
        section, sep, key = dotted.partition(".")
        if not sep or section not in SECTIONS:
            _fail(dotted, "unknown key")
        yield section, key, value, True


def load_config(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Config:
    """Build and validate the configuration: defaults, ``path`` (TOML), ``env``, ``overrides``.

    ``path`` falls back to ``env["FORTROLIG_CONFIG"]`` when None. ``overrides`` maps dotted keys
    (``"server.port"``) to values and wins over everything. Raises :class:`ConfigError` naming the
    offending key for an unknown key, a wrong type or an invalid value.
    """
    if path is None and env.get(CONFIG_PATH_ENV):
        path = Path(env[CONFIG_PATH_ENV])
    layers: list[Layer] = [_env_layer(env), _override_layer(overrides or {})]
    if path is not None:
        layers.insert(0, _toml_layer(path))
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for layer in layers:
        for section, key, raw, from_text in layer:
            values[section][key] = _convert(section, key, raw, from_text=from_text)
    built = {section: SECTIONS[section](**kwargs) for section, kwargs in values.items()}
    return Config(**built)


def read_private_file(path: Path, what: str = "file") -> bytes:
    """Return the bytes of ``path``, refusing anything but a private regular file.

    Refuses (``ConfigError``) a missing file, a symlink, a non-regular file, and a file that group
    or others may access (``mode & 0o077``). The checks run on the opened descriptor, so the file
    cannot be swapped between check and read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ConfigError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{what} {path} is accessible by group/others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def read_secret_file(path: Path) -> bytes:
    """Return the secret in ``path`` without a trailing newline.

    Refuses (``ConfigError``) what :func:`read_private_file` refuses, and a secret shorter than
    32 bytes.
    """
    secret = read_private_file(path, "secret file").rstrip(b"\r\n")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret in {path} is shorter than {MIN_SECRET_BYTES} bytes")
    return secret

"""Configuration of what nodes share: the records database and the coordination store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config_rules import is_eu_region, require

_DB_SCHEMES = ("sqlite://", "postgresql://", "postgres://")
_NODE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True, slots=True)
class RecordsConfig:
    """Consultations, rooms, invites, e-mail codes, pending eID logins and used join-token ids.

    An empty ``database_url`` is SQLite at ``<data_dir>/records.db`` (one node). Several nodes
    share one PostgreSQL database. Client contact details and eID login secrets are sealed with
    AES-256-GCM under the keyring at ``keyring_path`` (default
    ``<data_dir>/keys/records-keyring.json``, created mode 0600 on first start; every node of a
    cluster needs the same file).
    """

    database_url: str = ""
    keyring_path: Path | None = None

    def __post_init__(self) -> None:
        require(
            self.database_url == "" or self.database_url.startswith(_DB_SCHEMES),
            "records.database_url",
            f"must be empty (SQLite in the data dir) or a URL starting with one of {_DB_SCHEMES}",
        )


@dataclass(frozen=True, slots=True)
class CoordinationConfig:
    """How nodes find each other and agree who serves a room.

    An empty ``redis_url`` keeps coordination in this process (one node, no Redis). With Redis,
    each node refreshes its registry entry every ``heartbeat_s`` (Redis forgets it after
    ``node_ttl_s``) and renews the leases of its rooms, which lapse after ``lease_ttl_s`` without
    renewal; a node that could not renew for that long ends its copy of the room. The Redis
    password (an ACL user's, named in the URL as ``redis://user@host``) comes from
    ``redis_password_file`` (mode 0600, at least 32 bytes), never from the URL.
    ``default_regions`` are where a consultation may be served unless it says otherwise (empty:
    the region of the node that creates it). ``node_id`` defaults to an id kept in the data dir.
    """

    redis_url: str = ""
    redis_password_file: Path | None = None
    node_id: str = ""
    heartbeat_s: float = 1.0
    node_ttl_s: float = 3.0
    lease_ttl_s: float = 20.0
    redis_timeout_s: float = 1.0
    drain_deadline_s: float = 0.0
    default_regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require(
            self.redis_url == "" or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "coordination.redis_url",
            "must be empty (in-process, one node) or a redis://, rediss:// or unix:// URL",
        )
        require(
            self.redis_password_file is None or bool(self.redis_url),
            "coordination.redis_password_file",
            "needs coordination.redis_url",
        )
        require(
            self.node_id == "" or (len(self.node_id) <= 64 and set(self.node_id) <= _NODE_ID_CHARS),
            "coordination.node_id",
            "at most 64 characters of a-z, 0-9, '-', '_' and '.'",
        )
        require(0.1 <= self.heartbeat_s <= 60, "coordination.heartbeat_s", "must be in 0.1..60")
        require(
            self.node_ttl_s >= 2 * self.heartbeat_s,
            "coordination.node_ttl_s",
            "must be at least twice heartbeat_s (one lost heartbeat must not drop the node)",
        )
        require(
            self.lease_ttl_s >= 3 * self.heartbeat_s,
            "coordination.lease_ttl_s",
            "must be at least three times heartbeat_s (leases are renewed every heartbeat)",
        )
        require(
            0.1 <= self.redis_timeout_s <= self.heartbeat_s * 2,
            "coordination.redis_timeout_s",
            "must be in 0.1..2*heartbeat_s",
        )
        require(self.drain_deadline_s >= 0, "coordination.drain_deadline_s", "must be >= 0")
        for tag in self.default_regions:
            require(
                is_eu_region(tag),
                "coordination.default_regions",
                f"{tag!r} is not an EU/EEA region",
            )

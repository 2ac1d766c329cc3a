"""Validation helpers shared by the configuration sections (:mod:`fortrolig.core.config`)."""

from __future__ import annotations

import re
import typing

from .errors import ConfigError

REGION_PREFIXES = ("eu-", "eea-", "no-", "is-", "li-")
"""Allowed region tags: EU (``eu-*``), EEA (``eea-*``), Norway, Iceland, Liechtenstein."""
_REGION_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def fail(key: str, problem: str) -> typing.NoReturn:
    """Refuse the configuration, naming the key."""
    raise ConfigError(f"config key {key}: {problem}")


def require(ok: bool, key: str, problem: str) -> None:
    """Refuse the configuration unless ``ok``."""
    if not ok:
        fail(key, problem)


def is_eu_region(tag: object) -> bool:
    """An EU/EEA region tag such as ``eu-north`` or ``no-east`` (lower case, dashed)."""
    return (
        isinstance(tag, str)
        and bool(_REGION_RE.match(tag))
        and tag.startswith(REGION_PREFIXES)
        and len(tag) <= 32
    )

"""A load scenario: from a TOML file and/or command-line flags, validated against hard caps.

TOML layout (every key optional; flags win over the file)::

    [scenario]
    rooms = 2
    participants_per_room = 2
    ramp_per_s = 5          # participants started per second
    duration = "30s"        # steady state after the last participant started
    join_timeout = "20s"
    workers = 2
    decode_sample = false
    engine = "auto"         # native (C per-packet path), python, or auto: native when built

    [media]
    resolution = "640x360"
    fps = 30
    video_bitrate = "1M"
    audio_bitrate = "48k"

    [target]
    base_url = "http://127.0.0.1:8750"
    ice_address = "127.0.0.1"

    [thresholds]
    max_loss = "1%"
    max_join_p95 = "1s"
    max_freezes = 0
    max_failed = 0
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clip import MediaProfile

# Hard caps: a scenario beyond them is refused, not attempted.
MAX_PARTICIPANTS = 2000
MAX_ROOMS = 1000
MAX_PER_ROOM = 16
MAX_DURATION_S = 3600.0
MAX_RUN_S = 3 * 3600.0  # ramp + duration
MAX_RAMP_PER_S = 200.0
MIN_RAMP_PER_S = 0.05
MAX_WORKERS = 64
MAX_PER_WORKER = 500
MAX_JOIN_TIMEOUT_S = 120.0
ENGINES = ("auto", "python", "native")


class ScenarioError(ValueError):
    """The scenario is malformed or beyond the caps (exit status 2)."""


@dataclass(frozen=True)
class Thresholds:
    """Limits that make the run fail (exit status 3, or 4 for failed participants)."""

    max_loss_pct: float | None = None
    max_join_p95_s: float | None = None
    max_freezes: int | None = None
    max_failed: int = 0


@dataclass(frozen=True)
class Scenario:
    """What to run."""

    rooms: int = 1
    participants_per_room: int = 2
    ramp_per_s: float = 5.0
    duration_s: float = 30.0
    join_timeout_s: float = 20.0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    decode_sample: bool = False
    engine: str = "auto"  # python | native | auto (native when the extension is built)
    media: MediaProfile = field(default_factory=MediaProfile)
    base_url: str = "http://127.0.0.1:8750"
    ice_address: str = "127.0.0.1"
    thresholds: Thresholds = field(default_factory=Thresholds)
    metrics_token_file: str = ""  # the node's metrics.token_file, when /metrics needs it

    @property
    def participants(self) -> int:
        return self.rooms * self.participants_per_room

    @property
    def ramp_s(self) -> float:
        return (self.participants - 1) / self.ramp_per_s if self.participants > 1 else 0.0

    @property
    def end_s(self) -> float:
        """When every participant leaves, in seconds after the start."""
        return self.ramp_s + self.duration_s

    def validate(self) -> Scenario:
        """Check every value against the caps; returns self (workers clamped to participants)."""
        _range("rooms", self.rooms, 1, MAX_ROOMS)
        _range("participants_per_room", self.participants_per_room, 2, MAX_PER_ROOM)
        _range(
            "participants (rooms x participants_per_room)", self.participants, 2, MAX_PARTICIPANTS
        )
        _range("ramp_per_s", self.ramp_per_s, MIN_RAMP_PER_S, MAX_RAMP_PER_S)
        _range("duration", self.duration_s, 1.0, MAX_DURATION_S)
        _range("join_timeout", self.join_timeout_s, 1.0, MAX_JOIN_TIMEOUT_S)
        _range("workers", self.workers, 1, MAX_WORKERS)
        if self.engine not in ENGINES:
            raise ScenarioError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "native" and self.decode_sample:
            raise ScenarioError("decode_sample needs engine python (native never depacketises)")
        if self.end_s > MAX_RUN_S:
            raise ScenarioError(
                f"ramp-up ({self.ramp_s:.0f} s) + duration is {self.end_s:.0f} s, "
                f"over the cap of {MAX_RUN_S:.0f} s: raise ramp_per_s or lower the count"
            )
        workers = min(self.workers, self.participants)
        if math.ceil(self.participants / workers) > MAX_PER_WORKER:
            raise ScenarioError(
                f"{self.participants} participants on {workers} workers is over "
                f"{MAX_PER_WORKER} per worker: add workers"
            )
        m = self.media
        if m.width % 2 or m.height % 2:
            raise ScenarioError("resolution: width and height must be even")
        _range("resolution width", m.width, 16, 1920)
        _range("resolution height", m.height, 16, 1080)
        _range("fps", m.fps, 1, 60)
        _range("video_bitrate", m.video_bitrate, 20_000, 8_000_000)
        _range("audio_bitrate", m.audio_bitrate, 6_000, 510_000)
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ScenarioError(f"base_url must be http(s)://host[:port], not {self.base_url!r}")
        try:
            ipaddress.ip_address(self.ice_address)
        except ValueError as exc:
            raise ScenarioError(f"ice_address must be an IP address: {exc}") from None
        t = self.thresholds
        if t.max_loss_pct is not None:
            _range("max_loss", t.max_loss_pct, 0.0, 100.0)
        if t.max_join_p95_s is not None:
            _range("max_join_p95", t.max_join_p95_s, 0.0, 600.0)
        if t.max_freezes is not None:
            _range("max_freezes", t.max_freezes, 0, 10**9)
        _range("max_failed", t.max_failed, 0, MAX_PARTICIPANTS)
        return replace(self, workers=workers, base_url=self.base_url.rstrip("/"))

    def to_dict(self) -> dict[str, Any]:
        m = self.media
        t = self.thresholds
        return {
            "rooms": self.rooms,
            "participants_per_room": self.participants_per_room,
            "participants": self.participants,
            "ramp_per_s": self.ramp_per_s,
            "duration_s": self.duration_s,
            "join_timeout_s": self.join_timeout_s,
            "workers": self.workers,
            "decode_sample": self.decode_sample,
            "engine": self.engine,
            "media": {
                "resolution": f"{m.width}x{m.height}",
                "fps": m.fps,
                "video_bitrate": m.video_bitrate,
                "audio_bitrate": m.audio_bitrate,
                "clip_seconds": m.seconds,
                "seed": m.seed,
            },
            "base_url": self.base_url,
            "ice_address": self.ice_address,
            "thresholds": {
                "max_loss_pct": t.max_loss_pct,
                "max_join_p95_s": t.max_join_p95_s,
                "max_freezes": t.max_freezes,
                "max_failed": t.max_failed,
            },
        }


def _range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ScenarioError(f"{name} must be between {lo:g} and {hi:g}, not {value:g}")


# -- value parsers (also used as argparse types) -------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM])?(?:bps|bit/s)?\s*$")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_RES = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_duration(text: object) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"30s"``, ``"2m"``."""
    if isinstance(text, bool):
        raise ScenarioError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ScenarioError(f"not a duration (use e.g. 500ms, 30s, 2m): {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]


def parse_bitrate(text: object) -> int:
    """Bits per second from ``1000000``, ``"800k"``, ``"1.5M"``."""
    if isinstance(text, bool):
        raise ScenarioError(f"not a bitrate: {text!r}")
    if isinstance(text, int | float):
        return int(text)
    match = _RATE.match(str(text))
    if not match:
        raise ScenarioError(f"not a bitrate (use e.g. 800k, 1.5M): {text!r}")
    factor = {None: 1, "k": 1000, "K": 1000, "m": 1_000_000, "M": 1_000_000}[match.group(2)]
    return int(float(match.group(1)) * factor)


def parse_percent(text: object) -> float:
    """Percent from ``"1%"``, ``"0.5"`` or ``0.5``."""
    if isinstance(text, bool):
        raise ScenarioError(f"not a percentage: {text!r}")
    if isinstance(text, int | float):
        return float(text)
    match = _PCT.match(str(text))
    if not match:
        raise ScenarioError(f"not a percentage (use e.g. 1%): {text!r}")
    return float(match.group(1))


def parse_resolution(text: object) -> tuple[int, int]:
    match = _RES.match(str(text))
    if not match:
        raise ScenarioError(f"not a resolution (use e.g. 640x360): {text!r}")
    return int(match.group(1)), int(match.group(2))


def _int(text: object, name: str) -> int:
    if isinstance(text, bool):
        raise ScenarioError(f"{name} must be an integer, not {text!r}")
    try:
        return int(str(text))
    except ValueError:
        raise ScenarioError(f"{name} must be an integer, not {text!r}") from None


def _float(text: object, name: str) -> float:
    if isinstance(text, bool):
        raise ScenarioError(f"{name} must be a number, not {text!r}")
    try:
        return float(str(text))
    except ValueError:
        raise ScenarioError(f"{name} must be a number, not {text!r}") from None


def _bool(text: object, name: str) -> bool:
    if isinstance(text, bool):
        return text
    raise ScenarioError(f"{name} must be true or false, not {text!r}")


# Every settable key: (section, key) → converter. Flags use the same keys.
KEYS: dict[tuple[str, str], Any] = {
    ("scenario", "rooms"): lambda v: _int(v, "rooms"),
    ("scenario", "participants_per_room"): lambda v: _int(v, "participants_per_room"),
    ("scenario", "ramp_per_s"): lambda v: _float(v, "ramp_per_s"),
    ("scenario", "duration"): parse_duration,
    ("scenario", "join_timeout"): parse_duration,
    ("scenario", "workers"): lambda v: _int(v, "workers"),
    ("scenario", "decode_sample"): lambda v: _bool(v, "decode_sample"),
    ("scenario", "engine"): str,
    ("media", "resolution"): parse_resolution,
    ("media", "fps"): lambda v: _int(v, "fps"),
    ("media", "video_bitrate"): parse_bitrate,
    ("media", "audio_bitrate"): parse_bitrate,
    ("media", "seed"): lambda v: _int(v, "seed"),
    ("target", "base_url"): str,
    ("target", "ice_address"): str,
    ("target", "metrics_token_file"): str,
    ("thresholds", "max_loss"): parse_percent,
    ("thresholds", "max_join_p95"): parse_duration,
    ("thresholds", "max_freezes"): lambda v: _int(v, "max_freezes"),
    ("thresholds", "max_failed"): lambda v: _int(v, "max_failed"),
}


def read_toml(path: Path) -> dict[tuple[str, str], Any]:
    """The file's values by (section, key); unknown sections or keys are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario file {path} is not valid TOML: {exc}") from None
    values: dict[tuple[str, str], Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ScenarioError(f"{path}: top-level key {section!r} must be a [section]")
        for key, value in table.items():
            if (section, key) not in KEYS:
                raise ScenarioError(f"{path}: unknown key {section}.{key}")
            values[(section, key)] = value
    return values


def build(values: dict[tuple[str, str], Any]) -> Scenario:
    """A validated scenario from raw values (file, then flags on top)."""
    v = {k: KEYS[k](raw) for k, raw in values.items()}
    base = Scenario()
    media = base.media
    if ("media", "resolution") in v:
        width, height = v[("media", "resolution")]
        media = replace(media, width=width, height=height)
    for key, attr in (
        ("fps", "fps"),
        ("video_bitrate", "video_bitrate"),
        ("audio_bitrate", "audio_bitrate"),
        ("seed", "seed"),
    ):
        if ("media", key) in v:
            media = replace(media, **{attr: v[("media", key)]})
    t = base.thresholds
    thresholds = Thresholds(
        max_loss_pct=v.get(("thresholds", "max_loss"), t.max_loss_pct),
        max_join_p95_s=v.get(("thresholds", "max_join_p95"), t.max_join_p95_s),
        max_freezes=v.get(("thresholds", "max_freezes"), t.max_freezes),
        max_failed=v.get(("thresholds", "max_failed"), t.max_failed),
    )
    scenario = Scenario(
        rooms=v.get(("scenario", "rooms"), base.rooms),
        participants_per_room=v.get(
            ("scenario", "participants_per_room"), base.participants_per_room
        ),
        ramp_per_s=v.get(("scenario", "ramp_per_s"), base.ramp_per_s),
        duration_s=v.get(("scenario", "duration"), base.duration_s),
        join_timeout_s=v.get(("scenario", "join_timeout"), base.join_timeout_s),
        workers=v.get(("scenario", "workers"), base.workers),
        decode_sample=v.get(("scenario", "decode_sample"), base.decode_sample),
        engine=v.get(("scenario", "engine"), base.engine),
        media=media,
        base_url=v.get(("target", "base_url"), base.base_url),
        ice_address=v.get(("target", "ice_address"), base.ice_address),
        thresholds=thresholds,
        metrics_token_file=v.get(("target", "metrics_token_file"), base.metrics_token_file),
    )
    return scenario.validate()

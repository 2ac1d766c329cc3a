"""`fortrolig backup create | restore | verify`: encrypted journal backups erasure reaches."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fortrolig.backup import service
from fortrolig.backup.archive import Manifest
from fortrolig.core.config import Config, load_config


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["server.data_dir"] = args.data_dir
    return load_config(args.config, os.environ, overrides)


def _source(args: argparse.Namespace) -> service.Source:
    config = _config(args)
    return service.Source.of(config.server.data_dir, config.journal.database_url or None)


def _print_manifest(verb: str, path: Path, manifest: Manifest, as_json: bool, **extra: Any) -> None:
    if as_json:
        print(json.dumps({"backup": str(path), **asdict(manifest), **extra}, sort_keys=True))
        return
    print(
        f"{verb} {path}: format {manifest.format_version}, {manifest.source_kind}, created "
        f"{manifest.created_at}, {manifest.content_bytes} bytes, sha256 {manifest.content_sha256}"
    )
    for name, value in extra.items():
        print(f"{name.replace('_', ' ')}: {value}")


def cmd_create(args: argparse.Namespace) -> int:
    """Write an encrypted, consistent backup of the journal (the node may keep running)."""
    manifest = asyncio.run(service.create(_source(args), args.key, args.out, new_key=args.new_key))
    _print_manifest("created", args.out, manifest, args.json)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a backup completely (key, manifest, every segment, SHA-256) without restoring."""
    manifest = service.verify(args.backup, args.key)
    _print_manifest("verified", args.backup, manifest, args.json)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup into the (stopped) node's journal, re-applying the live erasures."""
    report = asyncio.run(service.restore(args.backup, args.key, _source(args), force=args.force))
    applied = report.erasures_applied
    _print_manifest("restored", args.backup, report.manifest, args.json, erasures_applied=applied)
    return 0


def add_parsers(sub: Any) -> None:
    """Add `backup create|restore|verify` to the top-level subparsers."""
    backup = sub.add_parser("backup", help="encrypted journal backups")
    backup_sub = backup.add_subparsers(dest="backup_command", required=True)
    create = _command(backup_sub, "create", "write an encrypted backup of the journal", cmd_create)
    create.add_argument("--out", type=Path, required=True, help="the new backup file")
    create.add_argument(
        "--new-key", action="store_true", help="create the --key file (0600) for this backup"
    )
    verify = _command(backup_sub, "verify", "check a backup without restoring it", cmd_verify)
    verify.add_argument("backup", type=Path)
    restore = _command(
        backup_sub, "restore", "restore a backup (node stopped; erasures re-applied)", cmd_restore
    )
    restore.add_argument("backup", type=Path)
    restore.add_argument("--force", action="store_true", help="replace an existing journal")


def _command(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    command.add_argument("--data-dir", type=Path)
    command.add_argument("--config", type=Path)
    command.add_argument(
        "--key", type=Path, required=True, help="the backup key file (0600, keep it off the node)"
    )
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(func=func)
    return command

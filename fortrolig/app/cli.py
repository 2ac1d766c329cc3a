"""The `fortrolig` command: serve, session create, keys rotate, audit verify|report, journal
retention, backup, processing-record."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from fortrolig.core import cli_errors
from fortrolig.core.clock import SystemClock
from fortrolig.core.config import Config, load_config
from fortrolig.core.errors import BadRequest, FortroligError
from fortrolig.core.keys import load_or_create_signing_keys
from fortrolig.journal import cli as journal_cli
from fortrolig.journal.audit_report import NodeInfo
from fortrolig.journal.recording_http import PLAY_PREFIX
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind

from . import fdlimit, listen
from .cli_accounts import add_parsers as add_account_parsers
from .cli_accounts import ensure_dev_subscription
from .cli_backup import add_parsers as add_backup_parsers
from .cli_compliance import add_parsers as add_compliance_parsers
from .cli_nodes import add_parsers as add_node_parsers
from .cluster_ctx import NODE_ID_FILE
from .edge import CLIENT_ADDRESS
from .server import TLS_KEY, build_app, media_workers, public_url

DEV_PRACTITIONER = "dev-practitioner"


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    for flag, key in (
        ("host", "server.host"),
        ("port", "server.port"),
        ("data_dir", "server.data_dir"),
        ("media_workers", "media.workers"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    base_url = getattr(args, "base_url", None)
    if base_url:
        overrides["server.public_url"] = base_url
    return load_config(args.config, os.environ, overrides)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings: callbacks carry one-time codes and states, and
    a health-data service logs no more than it needs. The address is the client's as a
    trusted proxy named it (``server.trusted_proxies``), else the connection's peer."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = request.path
        if path.startswith(PLAY_PREFIX):
            path = PLAY_PREFIX + "<ticket>"  # the URL is a credential (a playback capability)
        self.logger.info(
            '%s "%s %s" %d %.3fs',
            request.get(CLIENT_ADDRESS, request.remote),
            request.method,
            path,
            response.status,
            time,
        )


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the node until interrupted."""
    config = _config(args)
    logging.basicConfig(
        level=config.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Before anything opens (media worker processes inherit the limit).
    needed = fdlimit.fds_needed(
        config.edge.max_connections,
        len(config.media.ice_host_addresses),
        media_in_process=media_workers(config) == 1,
    )
    fdlimit.report(fdlimit.raise_nofile_limit(needed), config.edge.max_connections)
    app = build_app(config)
    tls = app[TLS_KEY]
    print(
        f"fortrolig serving on {public_url(config)} (data dir {config.server.data_dir}"
        f"{', TLS ' + str(config.server.tls_cert_file) if tls else ''})",
        flush=True,
    )
    listen.run(app, config, PathOnlyAccessLogger)
    return 0


async def _create_session(
    config: Config, base_url: str, max_participants: int | None, force_relay: bool = False
) -> dict[str, Any]:
    signing_key, _ = load_or_create_signing_keys(config.server.data_dir)
    await ensure_dev_subscription(config, DEV_PRACTITIONER)
    issuer = TokenIssuer(signing_key, config.auth.issuer, SystemClock())
    access = issuer.issue(
        TokenKind.ACCESS, DEV_PRACTITIONER, Role.PRACTITIONER, ttl_s=config.auth.access_token_ttl_s
    )
    headers = {"Authorization": f"Bearer {access}"}
    async with ClientSession(headers=headers) as http:
        body: dict[str, Any] = {}
        if max_participants is not None:
            body["max_participants"] = max_participants
        if force_relay:
            body["force_relay"] = True
        async with http.post(f"{base_url}/api/v1/rooms", json=body) as resp:
            room = await _checked(resp)
        urls = {}
        for role in ("practitioner", "client"):
            async with http.post(
                f"{base_url}/api/v1/rooms/{room['room_id']}/tokens", json={"role": role}
            ) as resp:
                urls[role] = await _checked(resp)
    return {
        "room_id": room["room_id"],
        "max_participants": room["max_participants"],
        "practitioner_url": urls["practitioner"]["url"],
        "client_url": urls["client"]["url"],
        "practitioner_token": urls["practitioner"]["token"],
        "client_token": urls["client"]["token"],
        "expires_at": min(urls["practitioner"]["expires_at"], urls["client"]["expires_at"]),
        "access_token": access,
    }


async def _create_consultation(
    config: Config, base_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    """A consultation with an invite (the client verifies, then waits to be admitted)."""
    signing_key, _ = load_or_create_signing_keys(config.server.data_dir)
    await ensure_dev_subscription(config, DEV_PRACTITIONER)
    issuer = TokenIssuer(signing_key, config.auth.issuer, SystemClock())
    access = issuer.issue(
        TokenKind.ACCESS, DEV_PRACTITIONER, Role.PRACTITIONER, ttl_s=config.auth.access_token_ttl_s
    )
    body: dict[str, Any] = {"verification": args.verification}
    for key, value in (
        ("client_email", args.client_email),
        ("client_name", args.client_name),
        ("max_participants", args.max_participants),
    ):
        if value is not None:
            body[key] = value
    if args.send_invite:
        body["send_invite"] = True
    if args.force_relay:
        body["force_relay"] = True
    async with ClientSession(headers={"Authorization": f"Bearer {access}"}) as http:
        async with http.post(f"{base_url}/api/v1/consultations", json=body) as resp:
            consultation = await _checked(resp)
        room_id = consultation["room_id"]
        async with http.post(
            f"{base_url}/api/v1/rooms/{room_id}/tokens", json={"role": "practitioner"}
        ) as resp:
            practitioner = await _checked(resp)
    invite = consultation["invite"]
    return {
        "room_id": room_id,
        "consultation_id": consultation["consultation_id"],
        "verification": consultation["verification"],
        "practitioner_url": practitioner["url"],
        "practitioner_token": practitioner["token"],
        "invite_url": invite["url"],
        "client_url": invite["url"],
        "invite_sent": invite["sent"],
        "invite_expires_at": invite["expires_at"],
        "expires_at": practitioner["expires_at"],
        "access_token": access,
    }


async def _checked(resp: Any) -> dict[str, Any]:
    data: dict[str, Any] = await resp.json()
    if resp.status >= 400:
        # The node's documented error body: its code becomes the command's own.
        error = data.get("error")
        if not isinstance(error, dict):
            error = {}
        message = f"the node refused ({resp.status}): {error.get('message', data)}"
        raise BadRequest(message, code=str(error.get("code") or "server_refused"))
    return data


def cmd_session_create(args: argparse.Namespace) -> int:
    """Create a room on a running node (signing as the dev practitioner) and print its links.

    ``--verification none`` (the default) keeps the direct links of before: the client's link
    joins at once, no waiting room. Any other mode creates a consultation: the client opens an
    invite link, verifies, and waits until the practitioner admits it.
    """
    config = _config(args)
    base = (args.base_url or public_url(config)).rstrip("/")
    if args.verification == "none":
        if args.client_email or args.client_name or args.send_invite:
            raise BadRequest(
                "--client-email/--client-name/--send-invite need --verification",
                code="bad_arguments",
            )
        result = asyncio.run(_create_session(config, base, args.max_participants, args.force_relay))
    else:
        result = asyncio.run(_create_consultation(config, base, args))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"room:         {result['room_id']}")
        print(f"practitioner: {result['practitioner_url']}")
        print(f"client:       {result['client_url']}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Add a journal KEK version and rewrap every client data key (safe while the node runs)."""
    config = _config(args)
    return journal_cli.keys_rotate(
        config.server.data_dir,
        database_url=config.journal.database_url or None,
        keyring_path=config.journal.keyring_path,
        as_json=args.json,
    )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify the journal's audit hash chain: 0 intact, 1 broken (first bad entry printed)."""
    config = _config(args)
    return journal_cli.audit_verify(
        config.server.data_dir,
        database_url=config.journal.database_url or None,
        keyring_path=config.journal.keyring_path,
        as_json=args.json,
    )


def node_site(config: Config) -> tuple[str, tuple[str, ...]]:
    """The node's id and allowed regions, read without creating anything (a node that never
    started has no id file yet: ``unassigned``)."""
    node_id = config.coordination.node_id
    if not node_id:
        try:
            node_id = (config.server.data_dir / NODE_ID_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            node_id = ""
    allowed = config.coordination.default_regions or (config.server.region,)
    return node_id or "unassigned", allowed


def cmd_audit_report(args: argparse.Namespace) -> int:
    """Report who read, exported or changed which journals in a period (GDPR art. 33)."""
    config = _config(args)
    node_id, allowed = node_site(config)
    return journal_cli.audit_report(
        config.server.data_dir,
        since=args.since,
        until=args.until,
        node=NodeInfo(node_id, config.server.region, allowed, ""),
        fmt=args.format,
        out_path=args.out,
        database_url=config.journal.database_url or None,
        keyring_path=config.journal.keyring_path,
        as_json=args.json,
    )


def cmd_journal_retention(args: argparse.Namespace) -> int:
    """Erase the journals past retention now, or with --dry-run list them."""
    config = _config(args)
    return journal_cli.journal_retention(
        config.server.data_dir,
        dry_run=args.dry_run,
        retention_years=config.journal.retention_years,
        database_url=config.journal.database_url or None,
        keyring_path=config.journal.keyring_path,
        as_json=args.json,
    )


def _journal_command(
    sub: Any, name: str, help_text: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A subcommand with the options every journal operator command takes."""
    command: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    command.add_argument("--data-dir", type=Path)
    command.add_argument("--config", type=Path)
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(func=func)
    return command


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `fortrolig` command."""
    top = argparse.ArgumentParser(prog="fortrolig", description="Fortrolig teleconsultation node")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node (signaling, SFU) on embedded defaults")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--media-workers",
        type=int,
        help="media worker processes (0 = one per core, the default; 1 = in-process)",
    )
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--config", type=Path)
    serve.set_defaults(func=cmd_serve)

    session = sub.add_parser("session", help="consultation sessions")
    session_sub = session.add_subparsers(dest="session_command", required=True)
    create = session_sub.add_parser("create", help="create a room and print its links")
    create.add_argument("--data-dir", type=Path)
    create.add_argument("--config", type=Path)
    create.add_argument("--base-url")
    create.add_argument("--max-participants", type=int)
    create.add_argument(
        "--verification",
        choices=("none", "email_code", "anonymous", "eid"),
        default="none",
        help="how the client verifies (none: a direct client link, no waiting room)",
    )
    create.add_argument("--client-email", help="where the e-mail code (and invite) goes")
    create.add_argument("--client-name")
    create.add_argument("--send-invite", action="store_true", help="e-mail the invite link")
    create.add_argument(
        "--force-relay", action="store_true", help="media through TURN only (needs TURN)"
    )
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=cmd_session_create)

    keys = sub.add_parser("keys", help="key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    _journal_command(
        keys_sub,
        "rotate",
        "add a journal key-encryption key version; rewrap data keys",
        cmd_keys_rotate,
    )
    audit = sub.add_parser("audit", help="the journal's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    _journal_command(
        audit_sub, "verify", "verify the audit hash chain (exit 1 if broken)", cmd_audit_verify
    )
    report = _journal_command(
        audit_sub,
        "report",
        "who read, exported or changed which journals in a period (exit 1 if the chain is broken)",
        cmd_audit_report,
    )
    report.add_argument("--since", required=True, help="ISO 8601 time with offset, or a date")
    report.add_argument("--until", required=True, help="end of the period (not included)")
    # Checked by the command, not by argparse, so that a wrong value is a typed error line.
    report.add_argument("--format", default="json", help="json (default) or pdf")
    report.add_argument("--out", type=Path, help="new file for the report (PDF needs it)")
    journal = sub.add_parser("journal", help="the encrypted journal")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True)
    retention = _journal_command(
        journal_sub,
        "retention",
        "erase journals past retention (crypto-shredding)",
        cmd_journal_retention,
    )
    retention.add_argument("--dry-run", action="store_true", help="only list what would go")
    add_account_parsers(sub)
    add_backup_parsers(sub)
    add_compliance_parsers(sub)
    add_node_parsers(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fortrolig` console script."""
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except FortroligError as exc:
        return cli_errors.report(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())

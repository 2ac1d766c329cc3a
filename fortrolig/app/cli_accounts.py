"""`fortrolig account ...` and `fortrolig subscription ...`, and the dev practitioner's plan."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fortrolig.accounts import account_cli, subscription_cli
from fortrolig.accounts.subscription import Access
from fortrolig.accounts.subscription_service import open_subscriptions
from fortrolig.core.config import Config, load_config


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["server.data_dir"] = args.data_dir
    return load_config(args.config, os.environ, overrides)


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--data-dir", type=Path)
    command.add_argument("--config", type=Path)


def cmd_account_create(args: argparse.Namespace) -> int:
    """Create a practitioner account (the password from stdin or a prompt, never argv)."""
    config = _config(args)
    password = account_cli.read_password()
    return account_cli.create_account(
        config.server.data_dir,
        args.email,
        args.name,
        password,
        database_url=config.accounts.database_url or None,
        keyring_path=config.accounts.keyring_path,
    )


def cmd_account_reset_totp(args: argparse.Namespace) -> int:
    """Clear a practitioner's second factor (they enrol again); revokes their tokens."""
    config = _config(args)
    return account_cli.reset_totp(
        config.server.data_dir,
        args.email,
        database_url=config.accounts.database_url or None,
        keyring_path=config.accounts.keyring_path,
    )


def cmd_subscription(args: argparse.Namespace) -> int:
    """suspend / lift / show a practitioner's subscription."""
    config = _config(args)
    kw: dict[str, Any] = {
        "database_url": config.accounts.database_url or None,
        "as_json": args.json,
    }
    data = config.server.data_dir
    if args.subscription_command == "suspend":
        return subscription_cli.suspend(data, args.practitioner, args.reason, **kw)
    if args.subscription_command == "lift":
        return subscription_cli.lift(data, args.practitioner, **kw)
    return subscription_cli.show(data, args.practitioner, **kw)


def add_parsers(sub: Any) -> None:
    """Add the account and subscription commands to the top-level subparsers."""
    account = sub.add_parser("account", help="practitioner accounts")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    create = account_sub.add_parser("create", help="create an account (password on stdin)")
    create.add_argument("email")
    create.add_argument("--name", required=True, help="display name")
    _common(create)
    create.set_defaults(func=cmd_account_create)
    reset = account_sub.add_parser("reset-totp", help="clear the second factor")
    reset.add_argument("email")
    _common(reset)
    reset.set_defaults(func=cmd_account_reset_totp)

    subscription = sub.add_parser("subscription", help="the subscription gate (admin)")
    subscription_sub = subscription.add_subparsers(dest="subscription_command", required=True)
    for name, text in (
        ("suspend", "suspend at once: sessions and exports blocked, live sessions end"),
        ("lift", "lift a suspension"),
        ("show", "show the state and what it allows"),
    ):
        command = subscription_sub.add_parser(name, help=text)
        command.add_argument("practitioner")
        if name == "suspend":
            command.add_argument("--reason", required=True, choices=("non_payment", "misuse"))
        command.add_argument("--json", action="store_true", help="print one JSON object")
        _common(command)
        command.set_defaults(func=cmd_subscription)


async def ensure_dev_subscription(config: Config, practitioner: str) -> None:
    """Give the dev practitioner a paid monthly plan when subscriptions are enforced (demos,
    tests); a suspended one stays suspended."""
    if not config.billing.enforced:
        return
    subs = await open_subscriptions(
        config.server.data_dir, database_url=config.accounts.database_url or None
    )
    try:
        status = await subs.check(practitioner)
        if status.access == Access.SESSIONS or status.state.value == "suspended":
            return
        sub = await subs.subscribe(practitioner, "monthly")
        assert sub.anchor is not None
        await subs.record_payment(practitioner, sub.anchor)
    finally:
        await subs.close()

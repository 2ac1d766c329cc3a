"""Administrator commands for practitioner accounts, as plain functions returning exit codes.

The composition root wires them to argparse. Passwords are never taken from the command line
(visible in ``ps`` and shell history): :func:`read_password` reads one from a terminal prompt or
the first line of a stream (``--password-stdin``).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TextIO, TypeVar

from fortrolig.accounts.account_service import AccountService, open_accounts
from fortrolig.accounts.onboarding_store import open_onboarding_store
from fortrolig.core import cli_errors
from fortrolig.core.errors import ConfigError, FortroligError

T = TypeVar("T")

EXIT_OK: Final = cli_errors.EXIT_OK
EXIT_FAILED: Final = cli_errors.EXIT_REFUSED
"""The request was refused (e-mail taken, weak password, no such account)."""
EXIT_CONFIG: Final = cli_errors.EXIT_CONFIG
"""The data directory, database or keyring could not be used."""


def read_password(stdin: TextIO | None = None) -> str:
    """The first line of ``stdin`` (without its newline), or a hidden terminal prompt."""
    if stdin is not None:
        return stdin.readline().rstrip("\r\n")
    return getpass.getpass("Password: ")


def create_account(
    data_dir: Path,
    email: str,
    display_name: str,
    password: str,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Create a practitioner account; it must enrol TOTP (``/auth/totp/enrol``) before login."""

    async def action(service: AccountService) -> str:
        result = await service.sign_up(email, display_name, password)
        # The administrator vouches for the address: no confirmation mail is needed.
        await service.mark_confirmed(result.practitioner_id)
        return f"created {result.practitioner_id} <{result.email}>: {result.state.value}"

    return _run(action, data_dir, database_url, keyring_path, out, err)


def reset_totp(
    data_dir: Path,
    email: str,
    *,
    database_url: str | None = None,
    keyring_path: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Forget an account's second factor and end its sessions (lost phone); it re-enrols."""

    async def action(service: AccountService) -> str:
        practitioner_id = await service.reset_totp(email)
        return f"second factor of {practitioner_id} reset; sessions revoked; re-enrolment required"

    return _run(action, data_dir, database_url, keyring_path, out, err)


def _run(
    action: Callable[[AccountService], Awaitable[str]],
    data_dir: Path,
    database_url: str | None,
    keyring_path: Path | None,
    out: TextIO,
    err: TextIO,
) -> int:
    def say(line: str) -> None:
        print(line, file=err)

    async def main() -> int:
        try:
            service = await open_accounts(
                data_dir,
                None,
                database_url=database_url,
                keyring_path=keyring_path,
                onboarding=open_onboarding_store(data_dir, database_url),
            )
        except OSError as exc:  # e.g. PostgreSQL unreachable
            return cli_errors.report(ConfigError(f"cannot open the account database: {exc}"), say)
        except FortroligError as exc:
            cli_errors.report(exc, say)
            return EXIT_CONFIG  # whatever its code, the accounts cannot be used
        try:
            print(await action(service), file=out)
            return EXIT_OK
        except FortroligError as exc:
            return cli_errors.report(exc, say)
        finally:
            await service.close()

    return asyncio.run(main())

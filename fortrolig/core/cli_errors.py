"""The one mapping from errors to what a command prints and exits with.

Every operator command (``fortrolig ...``: sessions, accounts, subscriptions, the journal)
reports a refusal the same way: one line ``fortrolig: <code>: <message>`` on stderr, nothing on
stdout, and an exit status by who is at fault:

- 1 (:data:`EXIT_REFUSED`): the request was refused (e-mail taken, not suspended, no such
  account...); nothing changed;
- 2 (:data:`EXIT_CONFIG`): the configuration, data directory, database or keyring cannot be used
  (:class:`~fortrolig.core.errors.ConfigError`), or another server-side fault.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final

from .errors import ConfigError, FortroligError

EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_CONFIG: Final = 2

Err = Callable[[str], object]
"""Where the error line goes (default: stderr)."""


def to_stderr(line: str) -> None:
    """Print ``line`` on stderr (the default ``err``)."""
    print(line, file=sys.stderr)


def error_line(exc: FortroligError) -> str:
    """The line a command prints for ``exc``."""
    return f"fortrolig: {exc.code}: {exc.message}"


def exit_status(exc: FortroligError) -> int:
    """The exit status of a command that failed with ``exc``."""
    if isinstance(exc, ConfigError) or exc.fault == "server":
        return EXIT_CONFIG
    return EXIT_REFUSED


def report(exc: FortroligError, err: Err = to_stderr) -> int:
    """Print the error line for ``exc`` to ``err``; return the exit status."""
    err(error_line(exc))
    return exit_status(exc)

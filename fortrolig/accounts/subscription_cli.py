"""Operator commands for the subscription gate as plain functions; ``fortrolig.app`` wires
them to the command line.

Each returns an exit code and prints a short report (or one JSON object with ``as_json``) to
``out``; a refusal is one line ``fortrolig: <code>: <message>`` to ``err``
(:mod:`fortrolig.core.cli_errors`):

- 0: done;
- 1: refused by the rules (``not_suspended``, ``already_suspended``, ``no_subscription``,
  a bad reason…), nothing changed;
- 2: no database (a missing SQLite file is never created here: a mistyped ``--data-dir``
  must not silently suspend nobody in a new empty file) or another configuration problem.

A running node picks up a change made here within its change-feed interval
(:func:`~fortrolig.accounts.subscription_service.watch_changes`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fortrolig.accounts.subscription_service import (
    SubscriptionService,
    default_database_url,
    open_subscriptions,
    status_json,
)
from fortrolig.accounts.subscription_store import sqlite_path
from fortrolig.core import cli_errors
from fortrolig.core.cli_errors import EXIT_OK, to_stderr
from fortrolig.core.clock import Clock
from fortrolig.core.errors import ConfigError, FortroligError

Out = Callable[[str], object]


def suspend(
    data_dir: Path,
    practitioner: str,
    reason: str,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    as_json: bool = False,
    out: Out = print,
    err: Out = to_stderr,
) -> int:
    """``fortrolig subscription suspend PRACTITIONER --reason non_payment|misuse``."""

    async def run(service: SubscriptionService) -> int:
        await service.suspend(practitioner, reason)
        return await _report(service, practitioner, "suspended", as_json, out)

    return _with_service(run, data_dir, database_url, clock, err)


def lift(
    data_dir: Path,
    practitioner: str,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    as_json: bool = False,
    out: Out = print,
    err: Out = to_stderr,
) -> int:
    """``fortrolig subscription lift PRACTITIONER``."""

    async def run(service: SubscriptionService) -> int:
        await service.lift(practitioner)
        return await _report(service, practitioner, "lifted", as_json, out)

    return _with_service(run, data_dir, database_url, clock, err)


def show(
    data_dir: Path,
    practitioner: str,
    *,
    database_url: str | None = None,
    clock: Clock | None = None,
    as_json: bool = False,
    out: Out = print,
    err: Out = to_stderr,
) -> int:
    """``fortrolig subscription show PRACTITIONER``: facts and the derived status now."""

    async def run(service: SubscriptionService) -> int:
        return await _report(service, practitioner, "", as_json, out)

    return _with_service(run, data_dir, database_url, clock, err)


async def _report(
    service: SubscriptionService, practitioner: str, done: str, as_json: bool, out: Out
) -> int:
    sub = await service.get(practitioner)
    status = await service.check(practitioner)
    doc: dict[str, Any] = {"practitioner": practitioner, **status_json(sub, status)}
    if done:
        doc["done"] = done
    if as_json:
        out(json.dumps(doc, separators=(",", ":")))
        return EXIT_OK
    if done:
        out(f"{practitioner}: {done}")
    out(f"{practitioner}: {status.state.value}, access {status.access.value} ({status.reason})")
    for key in ("plan", "anchor", "paid_through", "trial_end", "ends_at", "until"):
        if doc[key] is not None:
            out(f"  {key}: {doc[key]}")
    if doc["suspension"] is not None:
        out(f"  suspension: {doc['suspension']['reason']} since {doc['suspension']['since']}")
    return EXIT_OK


def _with_service(
    run: Callable[[SubscriptionService], Awaitable[int]],
    data_dir: Path,
    database_url: str | None,
    clock: Clock | None,
    err: Out,
) -> int:
    url = database_url or default_database_url(data_dir)

    async def main() -> int:
        if not url.startswith(("postgresql://", "postgres://")):
            if not sqlite_path(url).is_file():
                raise ConfigError(f"no subscription database at {sqlite_path(url)}")
        service = await open_subscriptions(data_dir, database_url=url, clock=clock)
        try:
            return await run(service)
        finally:
            await service.close()

    try:
        return asyncio.run(main())
    except FortroligError as exc:
        return cli_errors.report(exc, err)

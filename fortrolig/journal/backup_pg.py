"""The PostgreSQL side of ``fortrolig backup``: ``pg_dump`` / ``pg_restore`` of the journal.

``pg_dump`` takes one consistent snapshot (a repeatable-read transaction) while nodes keep
writing; its custom-format output is streamed straight into the encrypted backup, never to disk.
A restore turns the image back into SQL with ``pg_restore`` and runs it, followed by the
erasure list, through ``psql --single-transaction``: the restored journal and the re-applied
erasures commit together, so an erased client's data key is never visible, even briefly.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from fortrolig.core.errors import ConfigError
from fortrolig.journal.model import ERASED_WITH_CLIENT, Erasure

_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
_CHUNK = 1 << 16


def tool(name: str) -> str:
    """The path of a PostgreSQL client program (``FORTROLIG_PG_BIN``, newest Debian, PATH)."""
    override = os.environ.get("FORTROLIG_PG_BIN")
    dirs = ([Path(override)] if override else []) + _BIN_DIRS
    for folder in dirs:
        if (folder / name).is_file():
            return str(folder / name)
    return name  # on PATH, or a clear "not found" from _run


def _conninfo(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying it (not on a command line)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is None:
        return url, env
    env["PGPASSWORD"] = parts.password
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), env


def dump(url: str) -> Iterator[bytes]:
    """Chunks of ``pg_dump --format=custom`` of the database at ``url``."""
    conninfo, env = _conninfo(url)
    argv = [tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "-d", conninfo]
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise ConfigError(f"cannot run pg_dump: {exc.strerror}") from None
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(_CHUNK):
            yield chunk
    finally:
        proc.stdout.close()
        errors = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        status = proc.wait()
    if status != 0:
        raise ConfigError(f"pg_dump failed (exit {status}): {errors}")


def restore(url: str, image: bytes, erasures: list[Erasure]) -> None:
    """Replace the journal at ``url`` with ``image`` plus ``erasures``, in one transaction."""
    conninfo, env = _conninfo(url)
    script = _run(
        [tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "-f", "-"],
        image,
        env,
    )
    psql = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    _run([*psql, "-d", conninfo, "-f", "-"], script + erasure_sql(erasures).encode(), env)


def erasure_sql(erasures: list[Erasure]) -> str:
    """SQL re-applying ``erasures`` in the live erasure's order (the guard triggers accept it)."""
    # The dump empties search_path; the guard trigger functions name their tables unqualified.
    lines = ["SET search_path = public;"]
    for e in erasures:
        cid, pid = _literal(e.client_id), _literal(e.practitioner_id)
        lines += [
            f"INSERT INTO erasures VALUES ({cid}, {pid}, {int(e.erased_us)}) "
            "ON CONFLICT DO NOTHING;",
            f"DELETE FROM client_keys WHERE client_id = {cid};",
            *(_delete_if_present(table, cid) for table in ERASED_WITH_CLIENT),
            f"DELETE FROM clients WHERE id = {cid};",
        ]
    return "\n".join(lines) + "\n"


def _delete_if_present(table: str, cid: str) -> str:
    # A backup of an older schema lacks newer tables (migrations add them after the restore).
    if "$" in cid:  # the literal sits inside a dollar-quoted body
        raise ValueError("'$' in a client id")
    return (
        f"DO $$ BEGIN IF to_regclass('public.{table}') IS NOT NULL THEN "
        f"DELETE FROM {table} WHERE client_id = {cid}; END IF; END $$;"
    )


def _literal(text: str) -> str:
    # standard_conforming_strings is on (the dump sets it): doubling quotes is complete quoting.
    if "\0" in text:
        raise ValueError("NUL in an identifier")
    return "'" + text.replace("'", "''") + "'"


def _run(argv: list[str], data: bytes, env: dict[str, str]) -> bytes:
    try:
        done = subprocess.run(argv, input=data, capture_output=True, env=env, check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run {Path(argv[0]).name}: {exc.strerror}") from None
    if done.returncode != 0:
        errors = done.stderr.decode("utf-8", "replace").strip()
        raise ConfigError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {errors}")
    return done.stdout


async def read_erasures(url: str) -> list[Erasure]:
    """The erasures recorded in the live database (none if it has no journal)."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('public.erasures')") is None:
            return []
        rows = await conn.fetch("SELECT client_id, practitioner_id, erased_us FROM erasures")
        return [Erasure(r[0], r[1], r[2]) for r in rows]
    finally:
        await conn.close()


async def is_empty(url: str) -> bool:
    """True when the database has no tables in its public schema."""
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        return int(count) == 0
    finally:
        await conn.close()

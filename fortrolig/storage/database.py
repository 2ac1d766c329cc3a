"""One database interface over SQLite and PostgreSQL, with versioned migrations.

Stores write each query once, with ``?`` placeholders and SQL both dialects understand
(``INSERT ... ON CONFLICT``, ``RETURNING``, ``COALESCE``); the PostgreSQL side rewrites the
placeholders to ``$1, $2, ...``. DDL may name the few types that differ as ``{blob}`` (BLOB |
BYTEA) and ``{int64}`` (INTEGER | BIGINT); :func:`ddl` fills them in.

Each store owns a *component* name and a list of :class:`Migration` steps; the table
``schema_migrations`` records how far each component's schema has been migrated, so every store
of a node can share one database file (or one PostgreSQL database) and evolve on its own.
A newer schema than the code knows refuses to start (``schema_too_new``) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from fortrolig.core.errors import ConfigError

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
Row = Sequence[Any]

_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {"blob": "BLOB", "int64": "INTEGER"},
    "postgresql": {"blob": "BYTEA", "int64": "BIGINT"},
}

MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


def ddl(statement: str, dialect: Dialect) -> str:
    """``statement`` with ``{blob}`` and ``{int64}`` replaced for ``dialect``."""
    return statement.format(**_TYPES[dialect])


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a component's schema: applied once, in one transaction, in order."""

    version: int
    statements: tuple[str, ...]


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer Fortrolig than this one."""

    code = "schema_too_new"


class Tx(Protocol):
    """One open transaction. Every call is one statement; rows are sequences by position."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """The first row of a query, or None."""
        ...

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        """Every row of a query."""
        ...


class Database(Protocol):
    """A SQLite file or a PostgreSQL database that every store of a node may share."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def url(self) -> str:
        """Where it is, without secrets (for logs)."""
        ...

    async def open(self) -> None:
        """Connect (idempotent); the migrations table exists afterwards."""
        ...

    async def close(self) -> None:
        """Disconnect; idempotent. Afterwards every call raises."""
        ...

    async def tx(self, fn: Callable[[Tx], Awaitable[T]], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction: committed when it returns, rolled back if it raises."""
        ...

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the steps of ``component`` not applied yet; the schema version afterwards."""
        ...


async def apply_migrations(tx: Tx, component: str, migrations: Sequence[Migration]) -> int:
    """Inside a write transaction (holding the database's migration lock): bring
    ``component`` up to its newest step. Shared by both dialects."""
    row = await tx.fetchone("SELECT version FROM schema_migrations WHERE component = ?", component)
    current = int(row[0]) if row is not None else 0
    newest = max((m.version for m in migrations), default=0)
    if current > newest:
        raise SchemaTooNew(
            f"{component} schema is version {current}; this Fortrolig knows up to {newest}"
        )
    for step in sorted(migrations, key=lambda m: m.version):
        if step.version <= current:
            continue
        for statement in step.statements:
            await tx.execute(statement)
        current = step.version
    await tx.execute(
        "INSERT INTO schema_migrations (component, version) VALUES (?, ?) "
        "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        component,
        current,
    )
    return current

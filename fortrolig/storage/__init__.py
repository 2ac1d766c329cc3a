"""The storage layer: one SQLite | PostgreSQL interface every store of a node uses.

:func:`open_database` picks the implementation from a URL (empty: SQLite in the data
directory); stores write their queries once against :class:`~.database.Tx` and their schema as
:class:`~.database.Migration` steps of their own component. Database drivers are imported only
inside this package (and by the older journal and accounts stores, which use its connection
classes directly).
"""

from __future__ import annotations

from pathlib import Path

from fortrolig.core.errors import ConfigError

from .database import Database, Dialect, Migration, Row, SchemaTooNew, Tx, ddl

__all__ = [
    "Database",
    "Dialect",
    "Migration",
    "Row",
    "SchemaTooNew",
    "Tx",
    "ddl",
    "open_database",
]


def open_database(url: str, default_path: Path) -> Database:
    """The database named by ``url``: ``sqlite:///abs/path`` or ``sqlite://rel/path``, a
    ``postgresql://`` DSN, or empty for SQLite at ``default_path``. Not connected yet."""
    from .postgres import PgDatabase
    from .sqlite import SqliteDatabase

    if not url:
        return SqliteDatabase(default_path)
    if url.startswith("sqlite://"):
        return SqliteDatabase(Path(url.removeprefix("sqlite://")))
    if url.startswith(("postgresql://", "postgres://")):
        return PgDatabase(url)
    raise ConfigError("a database URL starts with sqlite:// or postgresql://", code="bad_database")

"""The practitioner account store interface, implemented on SQLite and PostgreSQL, chosen by URL.

Every table and the schema-version table carry the ``account_`` prefix, so the store can share a
database with the journal and other packages (each migrates only its own tables, under its own
version table and, on PostgreSQL, its own advisory lock).

Everything that must be atomic is one store call, one transaction: counting a login attempt under
several throttle keys, spending a TOTP time step, rotating a refresh token, changing a password
together with revoking every session.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from fortrolig.accounts.practitioners import (
    PractitionerRow,
    RefreshOutcome,
    RefreshRecord,
    ThrottleKey,
)

SCHEMA_TABLE: Final = "account_schema_version"


class AccountStore(Protocol):
    """Persistence of accounts, throttle counters and refresh-token families."""

    @property
    def url(self) -> str:
        """Where the store lives (credentials removed)."""
        ...

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def schema_version(self) -> int:
        """The newest applied migration of the account tables."""
        ...

    # --- accounts ------------------------------------------------------------------------------

    async def create_practitioner(self, row: PractitionerRow) -> None:
        """Insert an account; :class:`EmailTaken` if the (normalised) e-mail exists."""
        ...

    async def get_practitioner(self, practitioner_id: str) -> PractitionerRow | None:
        """One account by id."""
        ...

    async def find_by_email(self, email: str) -> PractitionerRow | None:
        """One account by normalised e-mail."""
        ...

    async def replace_password_hash(self, practitioner_id: str, old: str, new: str) -> bool:
        """Compare-and-set the hash (rehash on login); sessions are untouched."""
        ...

    async def change_password(
        self, practitioner_id: str, old: str, new: str, revoked_after: float, now: float
    ) -> bool:
        """Compare-and-set the hash, set ``revoked_after`` and revoke every refresh family."""
        ...

    async def set_display_name(self, practitioner_id: str, display_name: str) -> bool:
        """Replace the (normalised) display name; False if there is no such account."""
        ...

    async def revoked_after(self, practitioner_id: str) -> float | None:
        """Tokens issued before this (unix seconds) must be refused; None: no cut-off."""
        ...

    # --- second factor -------------------------------------------------------------------------

    async def set_pending_totp(self, practitioner_id: str, sealed: bytes) -> bool:
        """Store a new not-yet-confirmed secret; False if the account is enrolled already."""
        ...

    async def confirm_totp(self, practitioner_id: str, sealed: bytes, step: int) -> bool:
        """Mark enrolled if the pending secret is still ``sealed`` and ``step`` is unused."""
        ...

    async def consume_totp_step(self, practitioner_id: str, step: int) -> bool:
        """Spend ``step``: True only if it is later than the last step spent (atomic)."""
        ...

    async def reset_totp(self, practitioner_id: str, revoked_after: float, now: float) -> bool:
        """Forget the second factor, set ``revoked_after`` and revoke every refresh family."""
        ...

    # --- throttling ----------------------------------------------------------------------------

    async def register_attempt(self, keys: Sequence[ThrottleKey], now: float) -> float:
        """Count one attempt under every key, unless one is locked.

        Returns 0 when the attempt may go ahead (and was counted as a failure under each key),
        else the seconds to wait (and nothing was counted).
        """
        ...

    async def clear_attempts(self, keys: Sequence[str]) -> None:
        """Forget the counters of ``keys`` (after a success)."""
        ...

    async def failures(self, key: str) -> int:
        """The failures counted under ``key`` (0 when it has no counter)."""
        ...

    # --- refresh tokens ------------------------------------------------------------------------

    async def start_family(
        self,
        family_id: str,
        practitioner_id: str,
        token_hash: str,
        now: float,
        expires_at: float,
    ) -> None:
        """Create a refresh family (one login) with its first token."""
        ...

    async def rotate_refresh(self, token_hash: str, new_hash: str, now: float) -> RefreshOutcome:
        """Judge the token (:func:`judge_refresh`); on ROTATE mark it used and add ``new_hash``
        to its family, on REUSED revoke the family. One transaction."""
        ...

    async def revoke_family_of(self, token_hash: str, now: float) -> bool:
        """Revoke the family the token belongs to (logout); False if unknown or revoked."""
        ...

    async def purge(self, now: float, keep_s: float) -> int:
        """Delete families expired or revoked more than ``keep_s`` ago and stale throttle rows."""
        ...


def open_account_store(url: str) -> AccountStore:
    """Choose the implementation by URL: ``postgresql://…``/``postgres://…`` vs SQLite.

    SQLite accepts ``sqlite:///abs/path.db``, ``sqlite://rel/path.db`` or a plain path. The store
    is not opened yet: ``await store.open()``.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from fortrolig.accounts.account_store_pg import PostgresAccountStore

        return PostgresAccountStore(url)
    from fortrolig.accounts.account_store_sqlite import SqliteAccountStore

    return SqliteAccountStore(sqlite_path(url))


def sqlite_path(url: str) -> Path:
    """The file path of a SQLite URL or plain path."""
    if not url.startswith("sqlite://"):
        return Path(url)
    rest = url.removeprefix("sqlite://")
    return Path(rest[1:] if rest.startswith("//") else rest)


def to_us(seconds: float) -> int:
    """Unix seconds to integer microseconds, as the tables keep times."""
    return round(seconds * 1_000_000)


def from_us(micros: int | None) -> float | None:
    """Integer microseconds back to unix seconds."""
    return None if micros is None else micros / 1_000_000


# Columns of account_practitioners in the order practitioner_from_row reads them; both stores
# select and insert with this list.
PRACTITIONER_COLUMNS: Final = (
    "id, email, display_name, password_hash, totp_sealed, totp_enrolled, totp_last_step, "
    "created_us, revoked_after_us"
)


def practitioner_from_row(r: Sequence[Any]) -> PractitionerRow:
    """A practitioner from a row of ``PRACTITIONER_COLUMNS`` (SQLite tuple or asyncpg record)."""
    return PractitionerRow(
        id=r[0],
        email=r[1],
        display_name=r[2],
        password_hash=r[3],
        totp_sealed=None if r[4] is None else bytes(r[4]),
        totp_enrolled=bool(r[5]),
        totp_last_step=r[6],
        created_at=from_us(r[7]) or 0.0,
        revoked_after=from_us(r[8]),
    )


def refresh_from_row(r: Sequence[Any]) -> RefreshRecord:
    """A refresh token from (hash, family, used_us, family expires_us, family revoked_us)."""
    return RefreshRecord(r[0], r[1], from_us(r[2]), r[3] / 1e6, from_us(r[4]))

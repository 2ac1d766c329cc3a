"""The signaling records in the storage layer's database (SQLite | PostgreSQL).

Consultations, invites, e-mail code challenges, pending eID logins, used join-token ids and room
records: everything a node acknowledges before a restart or on behalf of another node. Each
query is written once for both dialects. Atomic operations (claim an invite, spend an attempt,
consume a token id, take a login) are single conditional statements, so of two nodes racing
exactly one wins. Times are stored as integer microseconds.

Personal data is sealed (AES-256-GCM, :mod:`fortrolig.core.envelope`) under the records keyring:
a consultation's client name, e-mail and phone, and a pending eID login's nonce and PKCE
verifier. Invite secrets and e-mail code handles are stored only as SHA-256 digests (as in
memory before); codes only as salted digests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fortrolig.core.aead import AssociatedData, Keyring
from fortrolig.core.envelope import open_enveloped, seal_enveloped
from fortrolig.core.errors import RateLimited
from fortrolig.storage import Database, Migration, Row, Tx, ddl

from .auth import VerificationMode
from .eid.pending import PendingLogin
from .invites import Challenge, Consultation, Invite
from .records import ADMITTED, DENIED, Members, RoomRecord

COMPONENT = "signaling"
_SCHEMA = (
    """CREATE TABLE sig_consultations (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, room_id TEXT NOT NULL,
        verification TEXT NOT NULL, created_us {int64} NOT NULL, client_sealed {blob})""",
    "CREATE INDEX sig_consultations_by_owner ON sig_consultations (owner, created_us)",
    """CREATE TABLE sig_invites (
        digest TEXT PRIMARY KEY, consultation_id TEXT NOT NULL, created_us {int64} NOT NULL,
        expires_us {int64} NOT NULL, redeemed_us {int64}, revoked INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX sig_invites_by_consultation ON sig_invites (consultation_id)",
    "CREATE INDEX sig_invites_by_expiry ON sig_invites (expires_us)",
    """CREATE TABLE sig_challenges (
        digest TEXT PRIMARY KEY, consultation_id TEXT NOT NULL, salt {blob} NOT NULL,
        code_digest {blob} NOT NULL, expires_us {int64} NOT NULL,
        attempts_left INTEGER NOT NULL, completed INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX sig_challenges_by_expiry ON sig_challenges (expires_us)",
    """CREATE TABLE sig_eid_logins (
        state TEXT PRIMARY KEY, sealed {blob} NOT NULL, return_to TEXT NOT NULL,
        consultation_ref TEXT NOT NULL, redirect_uri TEXT NOT NULL, required_acr TEXT,
        created_us {int64} NOT NULL, expires_us {int64} NOT NULL, forget_us {int64} NOT NULL)""",
    "CREATE INDEX sig_eid_logins_by_forget ON sig_eid_logins (forget_us)",
    "CREATE TABLE sig_used_tokens (jti TEXT PRIMARY KEY, expires_us {int64} NOT NULL)",
    "CREATE INDEX sig_used_tokens_by_expiry ON sig_used_tokens (expires_us)",
    """CREATE TABLE sig_rooms (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, max_participants INTEGER NOT NULL,
        waiting_room INTEGER NOT NULL, created_us {int64} NOT NULL, regions TEXT NOT NULL,
        closed_us {int64})""",
    "CREATE INDEX sig_rooms_by_owner ON sig_rooms (owner, closed_us)",
    """CREATE TABLE sig_room_members (
        room_id TEXT NOT NULL, participant_id TEXT NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY (room_id, participant_id))""",
)
# Step 2: a room may force TURN relay for its participants (issue 13). Existing rooms keep
# the default (off), as they were created without it.
_SCHEMA_2 = ("ALTER TABLE sig_rooms ADD COLUMN force_relay INTEGER NOT NULL DEFAULT 0",)
# Invites work again until the consultation ends: redeemed_us is the latest redemption, and a
# code challenge remembers whether its client came back through an invite used before.
_SCHEMA_3 = ("ALTER TABLE sig_challenges ADD COLUMN is_returning INTEGER NOT NULL DEFAULT 0",)
# Consultations are appointments of a journal client (issue 14): when, and whose journal.
_SCHEMA_4 = (
    "ALTER TABLE sig_consultations ADD COLUMN scheduled_us {int64}",
    "ALTER TABLE sig_consultations ADD COLUMN journal_client TEXT",
)
KEEP_CLOSED_US = 3600 * 1_000_000
"""Finished invites and challenges stay an hour after they close (a clear "expired" error)."""


def migrations(db: Database) -> list[Migration]:
    """The signaling component's schema steps for ``db``'s dialect."""
    return [
        Migration(1, tuple(ddl(s, db.dialect) for s in _SCHEMA)),
        Migration(2, tuple(ddl(s, db.dialect) for s in _SCHEMA_2)),
        Migration(3, tuple(ddl(s, db.dialect) for s in _SCHEMA_3)),
        Migration(4, tuple(ddl(s, db.dialect) for s in _SCHEMA_4)),
    ]


async def open_records(db: Database) -> None:
    """Connect and migrate the signaling component (idempotent; safe from several nodes)."""
    await db.open()
    await db.migrate(COMPONENT, migrations(db))


def to_us(t: float) -> int:
    """Seconds as integer microseconds."""
    return round(t * 1_000_000)


def _s(us: int | None) -> float | None:
    return None if us is None else us / 1_000_000


def _aad(record: str, field: str, owner: str, key_version: int) -> AssociatedData:
    return AssociatedData(
        tenant=owner,
        client="",
        record=record,
        field=field,
        version=1,
        key_version=key_version,
        schema_version=1,
    )


# --- consultations, invites and e-mail codes ---------------------------------------------------

_CONSULTATION_COLUMNS = (
    "id, owner, room_id, verification, created_us, client_sealed, scheduled_us, journal_client"
)


class SqlInviteStore:
    """:class:`~fortrolig.signaling.invites.InviteStore` in the records database."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    async def add_consultation(self, consultation: Consultation) -> None:
        c = consultation
        contact = {"name": c.client_name, "email": c.client_email, "phone": c.client_phone}
        sealed = None
        if any(contact.values()):
            sealed = seal_enveloped(
                self._keyring,
                json.dumps(contact).encode("utf-8"),
                lambda v: _aad(c.id, "client", c.owner, v),
            )
        await self._db.tx(
            lambda tx: tx.execute(
                "INSERT INTO sig_consultations (id, owner, room_id, verification, created_us, "
                "client_sealed, scheduled_us, journal_client) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                c.id,
                c.owner,
                c.room_id,
                c.verification.value,
                to_us(c.created_at),
                sealed,
                None if c.scheduled_at is None else to_us(c.scheduled_at),
                c.journal_client_id,
            )
        )

    async def consultation(self, consultation_id: str) -> Consultation | None:
        row = await self._db.tx(
            lambda tx: tx.fetchone(
                f"SELECT {_CONSULTATION_COLUMNS} FROM sig_consultations WHERE id = ?",
                consultation_id,
            ),
            write=False,
        )
        return None if row is None else self._consultation(row)

    async def consultations_of(self, owner: str) -> list[Consultation]:
        rows = await self._db.tx(
            lambda tx: tx.fetchall(
                f"SELECT {_CONSULTATION_COLUMNS} FROM sig_consultations WHERE owner = ? "
                "ORDER BY COALESCE(scheduled_us, created_us) DESC, created_us DESC LIMIT 1000",
                owner,
            ),
            write=False,
        )
        return [self._consultation(row) for row in rows]

    def _consultation(self, row: Row) -> Consultation:
        contact: dict[str, Any] = {}
        if row[5] is not None:
            plain = open_enveloped(
                self._keyring, bytes(row[5]), lambda v: _aad(row[0], "client", row[1], v)
            )
            contact = json.loads(plain)
        return Consultation(
            id=row[0],
            owner=row[1],
            room_id=row[2],
            verification=VerificationMode(row[3]),
            created_at=row[4] / 1_000_000,
            client_name=contact.get("name"),
            client_email=contact.get("email"),
            client_phone=contact.get("phone"),
            scheduled_at=_s(row[6]),
            journal_client_id=row[7],
        )

    async def add_invite(self, invite: Invite) -> None:
        async def run(tx: Tx) -> None:
            await tx.execute(
                "DELETE FROM sig_invites WHERE expires_us < ?",
                to_us(invite.created_at) - KEEP_CLOSED_US,
            )
            await tx.execute(
                "INSERT INTO sig_invites (digest, consultation_id, created_us, expires_us) "
                "VALUES (?, ?, ?, ?)",
                invite.digest,
                invite.consultation_id,
                to_us(invite.created_at),
                to_us(invite.expires_at),
            )

        await self._db.tx(run)

    async def invite(self, digest: str) -> Invite | None:
        row = await self._db.tx(lambda tx: _invite_row(tx, digest), write=False)
        return None if row is None else _invite(row)

    async def claim_invite(self, digest: str, now: float, min_interval_s: float) -> Invite | None:
        async def run(tx: Tx) -> Row | None:
            row = await _invite_row(tx, digest)
            if row is None or row[5] or row[3] <= to_us(now):
                return None
            before = row[4]
            if before is not None and before > to_us(now - min_interval_s):
                return None
            # Compare-and-set on the previous redemption: the loser of a race changes nothing.
            if before is None:
                changed = await tx.execute(
                    "UPDATE sig_invites SET redeemed_us = ? WHERE digest = ? "
                    "AND redeemed_us IS NULL AND revoked = 0",
                    to_us(now),
                    digest,
                )
            else:
                changed = await tx.execute(
                    "UPDATE sig_invites SET redeemed_us = ? WHERE digest = ? "
                    "AND redeemed_us = ? AND revoked = 0",
                    to_us(now),
                    digest,
                    before,
                )
            return row if changed else None

        row = await self._db.tx(run)
        return None if row is None else _invite(row)

    async def release_invite(self, digest: str, previous: float | None) -> None:
        await self._db.tx(
            lambda tx: tx.execute(
                "UPDATE sig_invites SET redeemed_us = ? WHERE digest = ?",
                None if previous is None else to_us(previous),
                digest,
            )
        )

    async def revoke_invites(self, consultation_id: str) -> int:
        return await self._db.tx(
            lambda tx: tx.execute(
                "UPDATE sig_invites SET revoked = 1 WHERE consultation_id = ? AND revoked = 0",
                consultation_id,
            )
        )

    async def add_challenge(self, challenge: Challenge) -> None:
        c = challenge

        async def run(tx: Tx) -> None:
            await tx.execute(
                "DELETE FROM sig_challenges WHERE expires_us < ?",
                to_us(c.expires_at) - 2 * KEEP_CLOSED_US,
            )
            await tx.execute(
                "INSERT INTO sig_challenges (digest, consultation_id, salt, code_digest, "
                "expires_us, attempts_left, completed, is_returning) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                c.digest,
                c.consultation_id,
                c.salt,
                c.code_digest,
                to_us(c.expires_at),
                c.attempts_left,
                int(c.completed),
                int(c.returning),
            )

        await self._db.tx(run)

    async def challenge(self, digest: str) -> Challenge | None:
        row = await self._db.tx(lambda tx: _challenge_row(tx, digest), write=False)
        return None if row is None else _challenge(row)

    async def take_attempt(self, digest: str, now: float) -> Challenge | None:
        async def run(tx: Tx) -> Row | None:
            changed = await tx.execute(
                "UPDATE sig_challenges SET attempts_left = attempts_left - 1 WHERE digest = ? "
                "AND completed = 0 AND attempts_left > 0 AND expires_us > ?",
                digest,
                to_us(now),
            )
            return await _challenge_row(tx, digest) if changed else None

        row = await self._db.tx(run)
        return None if row is None else _challenge(row)

    async def complete_challenge(self, digest: str) -> bool:
        changed = await self._db.tx(
            lambda tx: tx.execute(
                "UPDATE sig_challenges SET completed = 1 WHERE digest = ? AND completed = 0",
                digest,
            )
        )
        return changed == 1

    async def delete_challenge(self, digest: str) -> None:
        await self._db.tx(
            lambda tx: tx.execute("DELETE FROM sig_challenges WHERE digest = ?", digest)
        )


async def _invite_row(tx: Tx, digest: str) -> Row | None:
    return await tx.fetchone(
        "SELECT digest, consultation_id, created_us, expires_us, redeemed_us, revoked "
        "FROM sig_invites WHERE digest = ?",
        digest,
    )


def _invite(row: Row) -> Invite:
    return Invite(
        digest=row[0],
        consultation_id=row[1],
        created_at=row[2] / 1_000_000,
        expires_at=row[3] / 1_000_000,
        redeemed_at=_s(row[4]),
        revoked=bool(row[5]),
    )


async def _challenge_row(tx: Tx, digest: str) -> Row | None:
    return await tx.fetchone(
        "SELECT digest, consultation_id, salt, code_digest, expires_us, attempts_left, "
        "completed, is_returning FROM sig_challenges WHERE digest = ?",
        digest,
    )


def _challenge(row: Row) -> Challenge:
    return Challenge(
        digest=row[0],
        consultation_id=row[1],
        salt=bytes(row[2]),
        code_digest=bytes(row[3]),
        expires_at=row[4] / 1_000_000,
        attempts_left=int(row[5]),
        completed=bool(row[6]),
        returning=bool(row[7]),
    )


# --- used join-token ids -----------------------------------------------------------------------


class SqlJtiStore:
    """:class:`~fortrolig.signaling.auth.JtiStore` shared by every node: a join token used on
    one node stays used on all of them, and across restarts."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now  # a zero-argument callable returning unix seconds (the node's clock)

    async def consume(self, jti: str, expires_at: float) -> bool:
        async def run(tx: Tx) -> int:
            now = to_us(self._now())
            await tx.execute("DELETE FROM sig_used_tokens WHERE expires_us <= ?", now)
            return await tx.execute(
                "INSERT INTO sig_used_tokens (jti, expires_us) VALUES (?, ?) "
                "ON CONFLICT (jti) DO NOTHING",
                jti,
                to_us(expires_at),
            )

        return await self._db.tx(run) == 1


# --- pending eID logins ------------------------------------------------------------------------


class SqlPendingStore:
    """:class:`~fortrolig.signaling.eid.pending.PendingStore` in the records database: a login begun
    on one node (or before a restart) can finish on another."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        now: Callable[[], float],
        *,
        max_entries: int,
        grace_s: float,
    ) -> None:
        self._db = db
        self._keyring = keyring
        self._now = now
        self._max = max_entries
        self._grace_us = to_us(grace_s)

    async def put(self, pending: PendingLogin) -> None:
        p = pending
        secrets_ = json.dumps({"nonce": p.nonce, "code_verifier": p.code_verifier}).encode()
        sealed = seal_enveloped(self._keyring, secrets_, lambda v: _aad(p.state, "eid", "", v))

        async def run(tx: Tx) -> None:
            await tx.execute("DELETE FROM sig_eid_logins WHERE forget_us <= ?", to_us(self._now()))
            row = await tx.fetchone("SELECT COUNT(*) FROM sig_eid_logins")
            if row is not None and int(row[0]) >= self._max:
                raise RateLimited("too many eID logins pending", code="eid_too_many_pending")
            await tx.execute(
                "INSERT INTO sig_eid_logins (state, sealed, return_to, consultation_ref, "
                "redirect_uri, required_acr, created_us, expires_us, forget_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                p.state,
                sealed,
                p.return_to,
                p.consultation_ref,
                p.redirect_uri,
                p.required_acr,
                to_us(p.created_at),
                to_us(p.expires_at),
                to_us(p.expires_at) + self._grace_us,
            )

        await self._db.tx(run)

    async def take(self, state: str) -> PendingLogin | None:
        async def run(tx: Tx) -> Row | None:
            row = await tx.fetchone(
                "SELECT state, sealed, return_to, consultation_ref, redirect_uri, required_acr, "
                "created_us, expires_us FROM sig_eid_logins WHERE state = ? AND forget_us > ?",
                state,
                to_us(self._now()),
            )
            # The DELETE decides who took it when two callbacks race: only one deletes.
            if (
                row is None
                or await tx.execute("DELETE FROM sig_eid_logins WHERE state = ?", state) != 1
            ):
                return None
            return row

        row = await self._db.tx(run)
        if row is None:
            return None
        plain = open_enveloped(self._keyring, bytes(row[1]), lambda v: _aad(row[0], "eid", "", v))
        sealed = json.loads(plain)
        return PendingLogin(
            state=row[0],
            nonce=sealed["nonce"],
            code_verifier=sealed["code_verifier"],
            return_to=row[2],
            consultation_ref=row[3],
            redirect_uri=row[4],
            required_acr=row[5],
            created_at=row[6] / 1_000_000,
            expires_at=row[7] / 1_000_000,
        )


# --- rooms -------------------------------------------------------------------------------------


class SqlRoomStore:
    """:class:`~fortrolig.signaling.records.RoomStore` in the records database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_room(self, room: RoomRecord) -> None:
        await self._db.tx(
            lambda tx: tx.execute(
                "INSERT INTO sig_rooms (id, owner, max_participants, waiting_room, created_us, "
                "regions, closed_us, force_relay) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                room.id,
                room.owner,
                room.max_participants,
                int(room.has_waiting_room),
                to_us(room.created_at),
                ",".join(room.regions),
                None if room.closed_at is None else to_us(room.closed_at),
                int(room.force_relay),
            )
        )

    async def room(self, room_id: str) -> RoomRecord | None:
        row = await self._db.tx(
            lambda tx: tx.fetchone(f"SELECT {_ROOM_COLS} FROM sig_rooms WHERE id = ?", room_id),
            write=False,
        )
        return None if row is None else _room(row)

    async def close_room(self, room_id: str, at: float) -> bool:
        changed = await self._db.tx(
            lambda tx: tx.execute(
                "UPDATE sig_rooms SET closed_us = ? WHERE id = ? AND closed_us IS NULL",
                to_us(at),
                room_id,
            )
        )
        return changed == 1

    async def open_rooms_of(self, owner: str, *, include_closed: bool = False) -> list[RoomRecord]:
        still_open = "" if include_closed else " AND closed_us IS NULL"
        rows = await self._db.tx(
            lambda tx: tx.fetchall(
                f"SELECT {_ROOM_COLS} FROM sig_rooms WHERE owner = ?{still_open} "
                "ORDER BY created_us",
                owner,
            ),
            write=False,
        )
        return [_room(r) for r in rows]

    async def ended_among(self, room_ids: list[str]) -> set[str]:
        still_open: set[str] = set()
        for start in range(0, len(room_ids), _ID_BATCH):
            batch = room_ids[start : start + _ID_BATCH]
            sql = (
                f"SELECT id FROM sig_rooms WHERE id IN ({', '.join('?' * len(batch))}) "
                "AND closed_us IS NULL"
            )

            async def run(tx: Tx, sql: str = sql, batch: list[str] = batch) -> list[Row]:
                return await tx.fetchall(sql, *batch)

            still_open.update(str(r[0]) for r in await self._db.tx(run, write=False))
        return set(room_ids) - still_open

    async def set_member(self, room_id: str, participant_id: str, state: str) -> None:
        if state not in (ADMITTED, DENIED):
            raise ValueError(f"unknown member state {state!r}")
        # Denied wins: an admission never overwrites a denial.
        await self._db.tx(
            lambda tx: tx.execute(
                "INSERT INTO sig_room_members (room_id, participant_id, state) VALUES (?, ?, ?) "
                "ON CONFLICT (room_id, participant_id) DO UPDATE SET state = excluded.state "
                "WHERE sig_room_members.state <> ?",
                room_id,
                participant_id,
                state,
                DENIED,
            )
        )

    async def members(self, room_id: str) -> Members:
        rows: Sequence[Row] = await self._db.tx(
            lambda tx: tx.fetchall(
                "SELECT participant_id, state FROM sig_room_members WHERE room_id = ?", room_id
            ),
            write=False,
        )
        return Members(
            admitted=frozenset(r[0] for r in rows if r[1] == ADMITTED),
            denied=frozenset(r[0] for r in rows if r[1] == DENIED),
        )


_ID_BATCH = 500  # ids per IN (...) list: well below SQLite's 32766 and PostgreSQL's 65535 limits
_ROOM_COLS = (
    "id, owner, max_participants, waiting_room, created_us, regions, closed_us, force_relay"
)


def _room(row: Row) -> RoomRecord:
    return RoomRecord(
        id=row[0],
        owner=row[1],
        max_participants=int(row[2]),
        has_waiting_room=bool(row[3]),
        created_at=row[4] / 1_000_000,
        regions=tuple(r for r in str(row[5]).split(",") if r),
        closed_at=_s(row[6]),
        force_relay=bool(row[7]),
    )

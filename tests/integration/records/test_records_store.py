"""The signaling records on real SQLite and a real PostgreSQL: atomic, durable, sealed.

Each test runs on both backends; "restart" means closing the database and opening a new
connection to the same file or database, as a node restarted by SIGTERM or SIGKILL would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from fortrolig.core.aead import FileKeyring, IntegrityError
from fortrolig.core.clock import FakeClock
from fortrolig.signaling.auth import VerificationMode
from fortrolig.signaling.eid import PendingLogin
from fortrolig.signaling.invites import Challenge, Consultation, Invite
from fortrolig.signaling.records import ADMITTED, DENIED, RoomRecord
from fortrolig.signaling.records_sql import (
    SqlInviteStore,
    SqlJtiStore,
    SqlPendingStore,
    SqlRoomStore,
    migrations,
    open_records,
)
from fortrolig.storage import Database, SchemaTooNew, open_database
from tests.conftest import fresh_database

NOW = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await fresh_database(request, tmp_path, "records")


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring.open(tmp_path / "keys" / "records-keyring.json")


async def opened(url: str, tmp_path: Path) -> Database:
    db = open_database(url, tmp_path / "unused.db")
    await open_records(db)
    return db


@pytest.fixture
async def db(url: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = await opened(url, tmp_path)
    yield database
    await database.close()


def consultation(**kw: object) -> Consultation:
    fields: dict[str, object] = {
        "id": "con_1",
        "owner": "prac_a",
        "room_id": "room_1",
        "verification": VerificationMode.EMAIL_CODE,
        "created_at": NOW,
        "client_name": "Anna Ærø",
        "client_email": "anna@example.eu",
        "client_phone": "+45 12 34 56 78",
    }
    fields.update(kw)
    return Consultation(**fields)  # type: ignore[arg-type]


async def test_consultations_invites_and_codes_survive_a_restart(
    url: str, tmp_path: Path, keyring: FileKeyring
) -> None:
    db = await opened(url, tmp_path)
    store = SqlInviteStore(db, keyring)
    await store.add_consultation(consultation())
    await store.add_invite(Invite("d" * 64, "con_1", NOW, NOW + 86_400))
    challenge = Challenge("c" * 64, "con_1", b"salt", b"digest", NOW + 600, 5)
    await store.add_challenge(challenge)
    assert (await store.claim_invite("d" * 64, NOW + 1, 0.0)) is not None
    await db.close()

    again = await opened(url, tmp_path)  # a new process on the same data
    try:
        store = SqlInviteStore(again, keyring)
        assert await store.consultation("con_1") == consultation()
        invite = await store.invite("d" * 64)
        assert invite is not None and invite.redeemed_at == pytest.approx(NOW + 1)
        assert await store.challenge("c" * 64) == challenge
        # The restarted store knows the invite was used: the next claim sees it (returning).
        before = await store.claim_invite("d" * 64, NOW + 2, 0.0)
        assert before is not None and before.redeemed_at == pytest.approx(NOW + 1)
        taken = await store.take_attempt("c" * 64, NOW + 2)
        assert taken is not None and taken.attempts_left == 4
    finally:
        await again.close()


async def test_client_contact_is_sealed_at_rest(
    db: Database, url: str, tmp_path: Path, keyring: FileKeyring
) -> None:
    store = SqlInviteStore(db, keyring)
    await store.add_consultation(consultation())
    raw = await db.tx(lambda tx: tx.fetchone("SELECT client_sealed FROM sig_consultations"))
    assert raw is not None
    blob = bytes(raw[0])
    for secret in (b"anna@example.eu", "Ærø".encode(), b"12 34 56"):
        assert secret not in blob
    # Moved to another consultation's row, it no longer opens.
    await store.add_consultation(consultation(id="con_2", client_email=None, client_name="B"))
    await db.tx(
        lambda tx: tx.execute(
            "UPDATE sig_consultations SET client_sealed = ? WHERE id = ?", blob, "con_2"
        )
    )
    with pytest.raises(IntegrityError):
        await store.consultation("con_2")
    # An anonymous consultation stores no contact at all.
    await store.add_consultation(
        consultation(id="con_3", client_name=None, client_email=None, client_phone=None)
    )
    row = await db.tx(
        lambda tx: tx.fetchone("SELECT client_sealed FROM sig_consultations WHERE id = ?", "con_3")
    )
    assert row is not None and row[0] is None


async def test_of_racing_claims_exactly_one_wins(db: Database, keyring: FileKeyring) -> None:
    store = SqlInviteStore(db, keyring)
    await store.add_consultation(consultation())
    await store.add_invite(Invite("e" * 64, "con_1", NOW, NOW + 60))
    claims = (store.claim_invite("e" * 64, NOW + 1, 30.0) for _ in range(8))
    results = await asyncio.gather(*claims)
    assert sum(r is not None for r in results) == 1
    # Within the interval nobody claims it again; after it, the claim sees the earlier use.
    assert await store.claim_invite("e" * 64, NOW + 30, 30.0) is None
    again = await store.claim_invite("e" * 64, NOW + 31, 30.0)
    assert again is not None and again.redeemed_at == pytest.approx(NOW + 1)
    # A failed follow-up puts the earlier use back.
    await store.release_invite("e" * 64, again.redeemed_at)
    back = await store.invite("e" * 64)
    assert back is not None and back.redeemed_at == pytest.approx(NOW + 1)
    # Expired, revoked (used or not) and unknown invites are never claimed.
    await store.add_invite(Invite("f" * 64, "con_1", NOW, NOW + 60))
    assert await store.claim_invite("f" * 64, NOW + 60, 0.0) is None
    assert await store.revoke_invites("con_1") == 2
    assert await store.claim_invite("e" * 64, NOW + 40, 0.0) is None
    assert await store.claim_invite("f" * 64, NOW + 1, 0.0) is None
    assert await store.claim_invite("0" * 64, NOW + 1, 0.0) is None


async def test_attempts_run_out_and_a_code_completes_once(
    db: Database, keyring: FileKeyring
) -> None:
    store = SqlInviteStore(db, keyring)
    await store.add_challenge(Challenge("a" * 64, "con_1", b"s", b"d", NOW + 600, 2))
    attempts = await asyncio.gather(*(store.take_attempt("a" * 64, NOW) for _ in range(5)))
    assert sorted(a.attempts_left for a in attempts if a is not None) == [0, 1]
    assert await store.take_attempt("a" * 64, NOW) is None
    assert await store.complete_challenge("a" * 64) is True
    assert await store.complete_challenge("a" * 64) is False


async def test_a_used_token_id_stays_used_across_a_restart(url: str, tmp_path: Path) -> None:
    clock = FakeClock(now=NOW)
    db = await opened(url, tmp_path)
    jtis = SqlJtiStore(db, clock.now)
    assert await jtis.consume("jti-1", NOW + 300) is True
    assert await jtis.consume("jti-1", NOW + 300) is False
    await db.close()
    again = await opened(url, tmp_path)
    try:
        jtis = SqlJtiStore(again, clock.now)
        racing = await asyncio.gather(*(jtis.consume("jti-2", NOW + 300) for _ in range(6)))
        assert racing.count(True) == 1
        assert await jtis.consume("jti-1", NOW + 300) is False
        clock.advance(301)  # expired ids are forgotten (the token itself is refused by exp)
        assert await jtis.consume("jti-1", NOW + 900) is True
    finally:
        await again.close()


def pending(state: str, expires_at: float = NOW + 600) -> PendingLogin:
    return PendingLogin(
        state=state,
        nonce="nonce-" + state,
        code_verifier="verifier-" + state,
        return_to="/invite",
        consultation_ref="ref",
        redirect_uri="http://127.0.0.1/eid/callback",
        required_acr=None,
        created_at=NOW,
        expires_at=expires_at,
    )


async def test_a_pending_eid_login_is_taken_once_and_its_secrets_are_sealed(
    db: Database, keyring: FileKeyring
) -> None:
    clock = FakeClock(now=NOW)
    store = SqlPendingStore(db, keyring, clock.now, max_entries=2, grace_s=600)
    await store.put(pending("s1"))
    raw = await db.tx(lambda tx: tx.fetchone("SELECT sealed FROM sig_eid_logins"))
    assert raw is not None and b"nonce-s1" not in bytes(raw[0])
    taken = await asyncio.gather(*(store.take("s1") for _ in range(4)))
    assert [t for t in taken if t is not None] == [pending("s1")]
    await store.put(pending("s2"))
    await store.put(pending("s3"))
    with pytest.raises(Exception) as info:
        await store.put(pending("s4"))
    assert getattr(info.value, "code", None) == "eid_too_many_pending"
    clock.advance(1300)  # past expiry + grace: forgotten, room for new logins
    assert await store.take("s2") is None
    await store.put(pending("s5", NOW + 2000))


async def test_room_records_and_members(db: Database) -> None:
    rooms = SqlRoomStore(db)
    record = RoomRecord("room_1", "prac_a", 3, True, NOW, ("eu-north", "eu-west"))
    await rooms.add_room(record)
    assert await rooms.room("room_1") == record
    await rooms.set_member("room_1", "p_1", ADMITTED)
    await rooms.set_member("room_1", "p_2", DENIED)
    await rooms.set_member("room_1", "p_2", ADMITTED)  # a denial is final
    await rooms.set_member("room_1", "p_1", ADMITTED)  # idempotent
    members = await rooms.members("room_1")
    assert members.admitted == {"p_1"} and members.denied == {"p_2"}
    assert [r.id for r in await rooms.open_rooms_of("prac_a")] == ["room_1"]
    await rooms.add_room(RoomRecord("room_2", "prac_a", 2, False, NOW, ("eu-north",)))
    many = ["room_1", "room_2", "room_gone", *(f"room_x{i}" for i in range(700))]
    ended = await rooms.ended_among(many)  # more ids than one IN list takes
    assert "room_1" not in ended and "room_2" not in ended and "room_gone" in ended
    assert len(ended) == len(many) - 2
    assert await rooms.close_room("room_2", NOW + 1) is True
    assert await rooms.ended_among(["room_1", "room_2"]) == {"room_2"}
    assert await rooms.close_room("room_1", NOW + 5) is True
    assert await rooms.close_room("room_1", NOW + 6) is False
    closed = await rooms.room("room_1")
    assert closed is not None and closed.closed_at == pytest.approx(NOW + 5)
    assert await rooms.open_rooms_of("prac_a") == []


async def test_force_relay_is_stored_and_step_2_keeps_older_rooms_relay_free(
    url: str, tmp_path: Path
) -> None:
    # A database left at step 1 by the previous release, with a room in it.
    old = open_database(url, tmp_path / "unused.db")
    await old.open()
    await old.migrate("signaling", migrations(old)[:1])
    await old.tx(
        lambda tx: tx.execute(
            "INSERT INTO sig_rooms (id, owner, max_participants, waiting_room, created_us, "
            "regions) VALUES ('room_old', 'prac_a', 2, 0, 1, 'eu-north')"
        )
    )
    await old.close()
    db = await opened(url, tmp_path)  # this release: step 2
    try:
        rooms = SqlRoomStore(db)
        before = await rooms.room("room_old")
        assert before is not None and before.force_relay is False
        relayed = RoomRecord("room_r", "prac_a", 2, True, NOW, ("eu-north",), force_relay=True)
        await rooms.add_room(relayed)
        assert await rooms.room("room_r") == relayed
    finally:
        await db.close()


async def test_a_schema_newer_than_the_code_refuses_to_start(db: Database) -> None:
    await db.tx(
        lambda tx: tx.execute(
            "UPDATE schema_migrations SET version = 99 WHERE component = 'signaling'"
        )
    )
    with pytest.raises(SchemaTooNew):
        await open_records(db)


async def test_two_nodes_migrating_one_postgresql_at_once(
    pg_server: object, tmp_path: Path
) -> None:
    from tests.support.postgres_server import TempPostgres

    assert isinstance(pg_server, TempPostgres)
    conn = await asyncpg.connect(pg_server.dsn)
    try:
        await conn.execute("CREATE DATABASE records_race")
    finally:
        await conn.close()
    url = pg_server.dsn_for("records_race")
    dbs = [open_database(url, tmp_path / "x.db") for _ in range(3)]
    try:
        await asyncio.gather(*(open_records(d) for d in dbs))
        row = await dbs[0].tx(
            lambda tx: tx.fetchone(
                "SELECT version FROM schema_migrations WHERE component = 'signaling'"
            )
        )
        assert row is not None and row[0] == len(migrations(dbs[0]))
    finally:
        for d in dbs:
            await d.close()

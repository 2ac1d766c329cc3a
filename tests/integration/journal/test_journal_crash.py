"""Crash safety: a writer SIGKILLed at random points loses no acknowledged note, corrupts nothing.

``FORTROLIG_CRASH_ROUNDS`` raises the number of kills for a longer run (default 200).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import SystemClock
from fortrolig.core.principal import Principal
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store

ROUNDS = int(os.environ.get("FORTROLIG_CRASH_ROUNDS", "200"))
WRITER = Path(__file__).with_name("crash_writer.py")
WHO = Principal("prac_crash", "practitioner")


async def test_sigkilled_writer_loses_no_acknowledged_note(tmp_path: Path) -> None:
    db, keyring, ack = tmp_path / "journal.db", tmp_path / "keyring.json", tmp_path / "acks"
    client_id = await _prepare(db, keyring)
    rng = random.Random(int(os.environ.get("FORTROLIG_CRASH_SEED", "5")))
    kills = _kill_rounds(db, keyring, ack, client_id, rng)
    assert kills == ROUNDS

    acked = ack.read_text().split()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    service = JournalService(open_store(str(db)), FileKeyring.open(keyring), SystemClock())
    await service.start()
    try:
        journal = await service.read_journal(WHO, client_id, "care")  # decrypts every row
        stored = {n.id for n in journal.notes}
        lost = [note_id for note_id in acked if note_id not in stored]
        assert lost == [], f"{len(lost)} acknowledged notes lost"
        assert len(acked) > ROUNDS // 4, "the writer hardly ever got to write"
        assert len(set(acked)) == len(acked)
        assert (await service.verify_audit()).ok
    finally:
        await service.close()


async def _prepare(db: Path, keyring: Path) -> str:
    service = JournalService(open_store(str(db)), FileKeyring.open(keyring), SystemClock())
    await service.start()
    try:
        return (await service.create_client(WHO, "Crash Test")).id
    finally:
        await service.close()


def _kill_rounds(db: Path, keyring: Path, ack: Path, client_id: str, rng: random.Random) -> int:
    root = Path(__file__).resolve().parents[3]
    server = subprocess.Popen(
        [sys.executable, str(WRITER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert server.stdin is not None and server.stdout is not None
    kills = 0
    try:
        for _ in range(ROUNDS):
            server.stdin.write(f"run {db} {keyring} {ack} {client_id} {WHO.subject}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            if rng.random() < 0.25:
                # During start-up (open, migrate check, key load) or the first write.
                time.sleep(rng.uniform(0.0, 0.04))
            else:
                # Mid-write: once this child has acknowledged a note, at a random moment after.
                # Waiting for the ack (not a fixed delay) keeps the kills mid-write on a busy
                # machine, where start-up alone can take longer than any fixed delay.
                _wait_for_ack(ack, _count_acks(ack) + 1)
                time.sleep(rng.uniform(0.0, 0.02))
            os.kill(pid, signal.SIGKILL)
            status = server.stdout.readline().split()
            assert status[0] == "exit", status
            assert os.WIFSIGNALED(int(status[1])), f"writer died on its own: {status}"
            kills += 1
    finally:
        server.stdin.close()
        server.wait(timeout=10)
        server.stdout.close()
    return kills


def _count_acks(ack: Path) -> int:
    return ack.read_bytes().count(b"\n") if ack.exists() else 0


def _wait_for_ack(ack: Path, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _count_acks(ack) < count:
        assert time.monotonic() < deadline, f"the writer acknowledged no note in {timeout} s"
        time.sleep(0.001)

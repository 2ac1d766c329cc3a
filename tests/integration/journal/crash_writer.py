"""Fork server for the crash-safety test (run as a script, not collected by pytest).

It imports everything once, then for every ``run`` line on stdin forks a writer child that appends
notes to a SQLite journal forever, appending each note id to an ack file only after the store
acknowledged it. It prints the child's PID; the test SIGKILLs that PID at a random moment; then
this process reaps the child and prints ``exit <status>``. Forking from a warm process makes
hundreds of kills cheap (no interpreter start-up per kill).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import SystemClock
from fortrolig.core.principal import Principal
from fortrolig.journal.service import JournalService
from fortrolig.journal.store import open_store


async def write_forever(db: str, keyring: Path, ack_path: str, client_id: str, who: str) -> None:
    """Append notes until killed; ack each one after the store returned."""
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    service = JournalService(open_store(db), FileKeyring.open(keyring, create=False), SystemClock())
    await service.start()
    principal = Principal(who, "practitioner")
    n = 0
    while True:
        n += 1
        note = await service.add_note(principal, client_id, f"note {n} " + "æøå " * (n % 50))
        # One write() of a short line is atomic; the kernel keeps it even if we die next.
        os.write(ack, f"{note.id}\n".encode())


def main() -> None:
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd != "run":
            break
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(write_forever(args[0], Path(args[1]), args[2], args[3], args[4]))
            finally:
                os._exit(3)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    main()

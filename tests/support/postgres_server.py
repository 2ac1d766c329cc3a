"""A throwaway PostgreSQL server for tests and benchmarks (Debian's ``postgresql-15`` binaries).

Not used by the server itself. Runs ``initdb`` and ``postgres`` on a temporary directory and a
free port on 127.0.0.1, as the ``postgres`` user when started as root (PostgreSQL refuses root),
and stops the server by its PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
SUPERUSER = "fortrolig"
_INITDB = ("-E", "UTF8", "--no-sync", "--locale=C.UTF-8")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres``; raises :class:`PostgresUnavailable`."""
    override = os.environ.get("FORTROLIG_PG_BIN")
    for folder in ([Path(override)] if override else []) + list(PG_BIN_DIRS):
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found in "
        f"{', '.join(str(p) for p in PG_BIN_DIRS)}: install Debian's postgresql-15 "
        "(apt-get install postgresql-15) or set FORTROLIG_PG_BIN"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempPostgres:
    """``start()`` a private server, use :attr:`dsn`, then ``stop()`` (by PID; removes the dir)."""

    def __init__(self, *, durable: bool = False) -> None:
        self._bin = find_pg_bin()
        # Tests may trade durability for speed; benchmarks keep fsync on to measure real commits.
        self._durable = durable
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: BinaryIO | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        """Superuser DSN of the ``postgres`` database."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """DSN of one database on this server."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        """initdb and start the server; wait until it accepts connections."""
        self._dir = Path(tempfile.mkdtemp(prefix="fortrolig-pg-"))
        user = _run_as()
        if user is not None:
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        data = self._dir / "data"
        subprocess.run(
            [str(self._bin / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", *_INITDB],
            check=True,
            capture_output=True,
            **_as_user(user),
        )
        self.port = _free_port()
        self._log_file = open(self._dir / "server.log", "wb")  # closed in stop()
        self._proc = subprocess.Popen(
            [str(self._bin / "postgres"), "-D", str(data), "-p", str(self.port), *self._flags()],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            start_new_session=True,
            **_as_user(user),
        )
        self._wait_ready(timeout)

    def _flags(self) -> list[str]:
        flags = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._dir}"]
        if self._durable:
            return [*flags, "-c", "fsync=on", "-c", "synchronous_commit=on"]
        return [*flags, "-c", "fsync=off", "-c", "synchronous_commit=off"]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited early; see {self.log_path()}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if "ready to accept connections" in self.log():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"postgres did not start within {timeout}s: {self.log()}")

    def log_path(self) -> Path | None:
        """The server log file."""
        return None if self._dir is None else self._dir / "server.log"

    def log(self) -> str:
        """The server log so far."""
        path = self.log_path()
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL if it hangs, then delete the data; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _run_as() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root but there is no 'postgres' user") from None


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

"""Report files written by operator commands: a checked format, a new private file, all or nothing.

Reports about health-data processing (``fortrolig audit report``, ``fortrolig
processing-record``) name clients by pseudonymous id, so their files are created mode 0600, never
overwrite an existing file (an earlier report may be evidence), and appear only when complete: the
bytes go to a temporary file beside the target, which is then hard-linked into place (atomic, and
it fails if the target appeared meanwhile). Any refusal leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Collection
from pathlib import Path

from .errors import BadRequest, Conflict


class UnsupportedFormat(BadRequest):
    """``--format`` names no format this command writes."""

    code = "unsupported_format"


class OutputUnwritable(BadRequest):
    """The ``--out`` file cannot be created (no such folder, not a folder, no permission)."""

    code = "output_unwritable"


class OutputExists(Conflict):
    """The ``--out`` file exists already; reports are never overwritten."""

    code = "output_exists"


def check_format(value: str, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``, else :class:`UnsupportedFormat`."""
    if value not in allowed:
        raise UnsupportedFormat(f"format {value!r} is not one of: {', '.join(sorted(allowed))}")
    return value


def check_new_file(path: Path) -> None:
    """Refuse early (before any work) a target that exists or whose folder is not writable."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.exists() or path.is_symlink():
        raise OutputExists(f"{path} exists already; choose a new file name")
    if not folder.is_dir():
        raise OutputUnwritable(f"cannot create {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputUnwritable(f"cannot create {path}: {folder} is not writable")


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600) holding exactly ``data``, or raise and leave nothing."""
    check_new_file(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise OutputUnwritable(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    except FileExistsError:
        raise OutputExists(f"{path} exists already; choose a new file name") from None
    except OSError as exc:
        raise OutputUnwritable(f"cannot write {path}: {exc.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)

"""The node's own TLS: a server SSLContext from certificate and key files, reloaded on change.

Certificates are renewed while the node runs (certbot every 60-90 days), so the files are
watched: :meth:`ReloadingTls.check` compares their identity (inode, size, mtime) with what was
loaded and, when either changed, builds a complete new context. Handshakes switch to the newest
context in the SNI callback (OpenSSL calls it for every ClientHello, with or without SNI), so a
new certificate takes effect for new connections without a restart, established connections
keep theirs, and a half-written or mismatched pair never replaces a working one.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

FileId = tuple[int, int, int, int]
"""(device, inode, size, mtime in ns) of a file: any replacement or rewrite changes it."""


def _file_id(path: Path) -> FileId:
    info = os.stat(path)
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _open_private(path: Path) -> int:
    """A descriptor of ``path``, refused unless it is a regular file only its owner may read.

    The same rules as :func:`fortrolig.core.config.read_private_file` (no symlink, mode & 077
    == 0), checked on the opened descriptor so the file cannot be swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"cannot open TLS key file {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        problem = f"is accessible by group/others (mode {mode:04o}); chmod 600 it"
    if problem is not None:
        os.close(fd)
        raise ConfigError(f"TLS key file {path} {problem}")
    return fd


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding the chain in ``cert_file`` and the key in ``key_file``.

    Raises :class:`ConfigError` for a key file others may read, a missing file, or a
    certificate and key that do not belong together.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    fd = _open_private(key_file)
    try:
        # The key is loaded from the descriptor that passed the checks, not by name again.
        proc_path = f"/proc/self/fd/{fd}"
        key_path = proc_path if os.path.exists(proc_path) else str(key_file)
        context.load_cert_chain(str(cert_file), key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate {cert_file} / key {key_file}: {exc}"
        ) from None
    finally:
        os.close(fd)
    return context


class ReloadingTls:
    """The context the server listens with, switching to a new one when the files change."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._seen = self._ids()
        # Raises at start-up: a node with an unusable certificate or key never starts.
        self._current = server_context(cert_file, key_file)
        self.context = self._current
        self.context.sni_callback = self._pick
        self.reloads = 0

    def _ids(self) -> tuple[FileId, FileId] | None:
        try:
            return (_file_id(self.cert_file), _file_id(self.key_file))
        except OSError:
            return None  # a file is being replaced: look again at the next check

    def _pick(self, sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if self._current is not self.context:
            sslobj.context = self._current

    def check(self) -> bool:
        """Load the files again if they changed since the last attempt; True if reloaded.

        A pair that fails to load (half written, mismatched, key file made readable by others)
        is logged and the current certificate stays; the next change is tried again.
        """
        ids = self._ids()
        if ids is None or ids == self._seen:
            return False
        self._seen = ids
        try:
            fresh = server_context(self.cert_file, self.key_file)
        except ConfigError as exc:
            log.error("TLS certificate not reloaded, keeping the current one: %s", exc)
            return False
        self._current = fresh
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

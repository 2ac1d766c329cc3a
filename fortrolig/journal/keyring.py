"""A file keyring that follows changes other processes make to its file.

``fortrolig keys rotate`` runs as its own process: it writes a new KEK version to the keyring file
(atomically, by rename) and then rewraps every data key under it. A running node still holding the
old keyring in memory would then fail to unwrap the rewrapped keys. :class:`ReloadingKeyring`
checks the file's identity (inode, mtime, size) before each use and re-reads it when it changed,
so rotation needs no restart. A stat per wrap or unwrap costs about a microsecond.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fortrolig.core.aead import FileKeyring, WrappedKey
from fortrolig.core.errors import ConfigError

log = logging.getLogger(__name__)

_Stamp = tuple[int, int, int]


class ReloadingKeyring:
    """A :class:`~fortrolig.core.aead.Keyring` over a :class:`FileKeyring` that reloads on change.

    If the file cannot be read any more (removed, made group-readable, malformed), the keys in
    memory stay in use and the problem is logged: losing the file must not stop a running node,
    and a changed KEK id still fails closed with an integrity error on unwrap.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self._path = path
        self._ring = FileKeyring.open(path, create=create)
        self._stamp = self._stat()

    @property
    def path(self) -> Path:
        """The keyring file."""
        return self._path

    @property
    def kek_id(self) -> str:
        """The keyring's stable identifier."""
        return self._fresh().kek_id

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use."""
        return self._fresh().current_version

    def wrap(self, dek: bytes) -> WrappedKey:
        """Wrap ``dek`` with the current KEK (as currently on disk)."""
        return self._fresh().wrap(dek)

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap with the KEK version the wrap names; re-reads the file first if it changed."""
        return self._fresh().unwrap(wrapped)

    def rotate(self) -> int:
        """Add a fresh KEK version to the file and make it current."""
        version = self._fresh().rotate()
        self._stamp = self._stat()
        return version

    def _stat(self) -> _Stamp | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _fresh(self) -> FileKeyring:
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            if stamp is None and self._stamp is not None:
                log.warning("keyring %s is gone; keeping the keys in memory", self._path)
                self._stamp = None
            return self._ring
        try:
            ring = FileKeyring.open(self._path, create=False)
        except ConfigError as exc:
            log.warning(
                "keyring %s changed but cannot be read: %s; keeping the old keys", self._path, exc
            )
            self._stamp = stamp  # warn once per change, not on every call
            return self._ring
        if ring.current_version != self._ring.current_version:
            log.info("keyring %s reloaded: KEK version %d", self._path, ring.current_version)
        self._ring, self._stamp = ring, stamp
        return ring

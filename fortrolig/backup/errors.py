"""Typed refusals of ``fortrolig backup``: each has a stable code for the CLI error line."""

from __future__ import annotations

from fortrolig.core.errors import BadRequest, Conflict, NotFound


class BackupNotFound(NotFound):
    """The backup (or key) file does not exist."""

    code = "backup_not_found"


class BackupWrongKey(BadRequest):
    """The key file is not the key this backup was made with."""

    code = "backup_wrong_key"


class BackupCorrupt(BadRequest):
    """The backup failed authentication or its checksum: truncated, changed or not a backup."""

    code = "backup_corrupt"


class BackupUnsupported(BadRequest):
    """The backup's format version (or source kind) is one this version cannot read."""

    code = "backup_unsupported_version"


class RestoreTargetNotEmpty(Conflict):
    """Restore would overwrite an existing journal and ``--force`` was not given."""

    code = "restore_target_not_empty"


class BackupExists(Conflict):
    """The output file exists already; backups are never overwritten."""

    code = "backup_exists"

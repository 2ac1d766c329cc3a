"""The ``[privacy]`` section: what the record of processing activities (GDPR art. 30) cannot
learn from the rest of the configuration: who the controller is, and declared facts about what
happens outside the node (the billing and hosting providers, how long backup files are kept).

Every key is optional; ``fortrolig processing-record`` shows an unset one as a placeholder to
fill in, naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fortrolig.core.config_rules import require

MAX_TEXT = 300
MAX_BACKUP_RETENTION_DAYS = 3650
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TEXT_KEYS = (
    "controller_name",
    "controller_address",
    "controller_contact",
    "dpo_contact",
    "billing_provider",
    "hosting_provider",
)


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """Controller details and declared retention for the record of processing activities.

    ``backup_retention_days`` 0 means not declared (docs/operations.md: the backup retention
    period bounds how long an erased client's wrapped key survives in backup files).
    """

    controller_name: str = ""
    controller_address: str = ""
    controller_contact: str = ""
    dpo_contact: str = ""
    billing_provider: str = ""
    hosting_provider: str = ""
    backup_retention_days: int = 0

    def __post_init__(self) -> None:
        for key in TEXT_KEYS:
            value = getattr(self, key)
            require(len(value) <= MAX_TEXT, f"privacy.{key}", f"at most {MAX_TEXT} characters")
            require(not _CONTROL_RE.search(value), f"privacy.{key}", "no control characters")
        require(
            0 <= self.backup_retention_days <= MAX_BACKUP_RETENTION_DAYS,
            "privacy.backup_retention_days",
            f"must be in 0..{MAX_BACKUP_RETENTION_DAYS} (0: not declared)",
        )

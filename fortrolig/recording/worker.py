"""A media worker that records: ``python -m fortrolig.recording.worker SETTINGS``.

The media package knows no recorder (recording uses media, not the other way round), so the
worker pool of a node that records starts this entry point instead of
``fortrolig.media.worker``: the same worker, given a recorder factory.
"""

from __future__ import annotations

from pathlib import Path

from fortrolig.media import worker
from fortrolig.media.settings import MediaSettings
from fortrolig.media.subscriber import RecorderFactory

from .recorder import DirectoryRecorders

RECORDING_WORKER_MODULE = "fortrolig.recording.worker"
"""This entry point, for :class:`~fortrolig.media.pool.WorkerPool`'s ``module``."""


def recorders_for(settings: MediaSettings) -> RecorderFactory | None:
    """Recorders writing into ``settings.recording_dir`` (None when it is not set)."""
    if not settings.recording_dir:
        return None
    return DirectoryRecorders(Path(settings.recording_dir))


if __name__ == "__main__":
    worker.main(recorders_for)

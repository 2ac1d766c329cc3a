"""Node packages the tests run (tests/oidc, tests/firefox): installed with `npm ci` from their
package-lock.json when node_modules lacks them, once per machine however many workers ask."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def npm_ci(folder: Path, package: str) -> None:
    """`npm ci` in ``folder`` unless ``package`` (its main dependency) is installed there."""
    installed = folder / "node_modules" / package / "package.json"
    if installed.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is needed to install {folder.name} ({package})")
    # Two xdist workers may both find it missing on a fresh clone: one installs, the other
    # waits for it (npm ci starts by deleting node_modules).
    lock_path = Path(tempfile.gettempdir()) / f"fortrolig-{folder.name}-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed.exists():
            return
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            check=True,
            timeout=300,
        )

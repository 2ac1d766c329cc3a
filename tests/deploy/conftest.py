"""The container image built from the top-level Dockerfile with Podman, and nodes run from it.

No container registry is reachable here (docs/operations.md, "Container image"): the base
image ``debian:bookworm-slim`` is made once with mmdebstrap from Debian's mirror and imported
under that name, so the Dockerfile builds unchanged. podman, runc and mmdebstrap are installed
with apt-get when missing (the suite runs as root, as `make test` does). The base file system
and Podman's layer cache outlive the test run (in ``CACHE_DIR`` and Podman's storage), so only
the first run on a machine is slow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

CACHE_DIR = Path(os.environ.get("FORTROLIG_TEST_CACHE", "/var/cache/fortrolig-test"))
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
# One tag per checkout, so that two worktrees testing at once do not replace each other's image.
IMAGE = "localhost/fortrolig-test:" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
TOOLS = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}
# crun fails on this kernel's hybrid cgroups; Podman's default limits exceed the shell's.
RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]
PODMAN = ["podman", "--runtime", "runc"]
# Like the official image: no documentation, no locales, no apt lists or caches.
MMDEBSTRAP_SLIM = [
    "--variant=minbase",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--aptopt=Dir::Cache::pkgcache ""',
    '--aptopt=Dir::Cache::srcpkgcache ""',
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
]


def run(
    cmd: list[str], timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure the exception names its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def install_tools() -> None:
    """apt-get install podman, runc and mmdebstrap when one is missing (needs root)."""
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        pytest.fail(f"{missing} missing and not root: run `make deps-system` first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)


def ensure_base_image() -> None:
    """Make ``debian:bookworm-slim`` resolve locally (mmdebstrap + podman import) once."""
    if run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tar = CACHE_DIR / "bookworm-slim.tar"
    if not tar.exists():
        partial = CACHE_DIR / f"bookworm-slim.{os.getpid()}.partial.tar"  # .tar: a tarball
        run(["mmdebstrap", *MMDEBSTRAP_SLIM, "bookworm", str(partial)], timeout=600)
        partial.rename(tar)
    run(["podman", "import", str(tar), BASE_IMAGE], timeout=300)


def build_image(tag: str = IMAGE, *extra: str) -> float:
    """``podman build`` the Dockerfile as-is; returns the seconds it took.

    ``--format docker`` keeps HEALTHCHECK (the OCI format has none). A machine whose HTTPS
    goes through a TLS-inspecting proxy has that CA in /usr/local/share/ca-certificates:
    mounting it there lets Debian's ca-certificates trust it inside the build as well.
    """
    cmd = ["podman", "build", "--pull=never", "--isolation=chroot", "--network=host"]
    cmd += ["--format", "docker", "-t", tag, *extra]
    local_cas = Path("/usr/local/share/ca-certificates")
    if local_cas.is_dir() and any(local_cas.iterdir()):
        cmd += ["--volume", f"{local_cas}:{local_cas}:ro"]
    start = time.monotonic()
    run([*cmd, str(ROOT)], timeout=1200)
    return time.monotonic() - start


@pytest.fixture(scope="session")
def image() -> str:
    """The node image, built from the Dockerfile (Podman's layer cache makes re-runs fast)."""
    install_tools()
    ensure_base_image()
    build_image()
    return IMAGE


@dataclass
class Node:
    """A node running in a container (host network, so every address is 127.0.0.1)."""

    name: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def exec(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(["podman", "exec", self.name, *cmd], timeout=timeout, check=False)

    def inspect(self) -> dict[str, object]:
        out = run(["podman", "inspect", "--type", "container", self.name])
        return dict(json.loads(out.stdout)[0])

    def logs(self) -> str:
        out = run(["podman", "logs", self.name], check=False)
        return out.stdout + out.stderr

    def session(self) -> dict[str, str]:
        """`fortrolig session create --json`, run inside the container as its own user."""
        out = self.exec("fortrolig", "session", "create", "--json", "--base-url", self.base_url)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))


def start_node(image: str, env: dict[str, str] | None = None) -> Node:
    """``podman run -d`` the image and wait until /healthz answers."""
    port = free_port()
    name = f"fortrolig-test-{os.getpid()}-{port}"
    settings = {
        # Host networking: the media's ephemeral UDP ports need no publishing. Listen on
        # loopback only (the image's default is 0.0.0.0) so that nothing leaves this machine.
        "FORTROLIG_SERVER__HOST": "127.0.0.1",
        "FORTROLIG_SERVER__PORT": str(port),
        "FORTROLIG_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "FORTROLIG_MEDIA__ICE_HOST_ADDRESSES": "127.0.0.1",
        "FORTROLIG_MEDIA__WORKERS": "2",
        **(env or {}),
    }
    cmd = [*PODMAN, "run", "-d", "--name", name, "--network=host", *RUN_FLAGS]
    for key, value in settings.items():
        cmd += ["-e", f"{key}={value}"]
    run([*cmd, image])
    node = Node(name, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(node.base_url + "/healthz", timeout=1):
                return node
        except OSError:
            state = node.inspect()["State"]
            if not isinstance(state, dict) or not state.get("Running"):
                logs = node.logs()
                remove_node(node)
                raise AssertionError(f"container exited: {state}\n{logs}") from None
            if time.monotonic() > deadline:
                logs = node.logs()
                remove_node(node)
                raise AssertionError(f"no /healthz within 60 s:\n{logs}") from None
            time.sleep(0.2)


def remove_node(node: Node) -> None:
    """Stop and remove the container and its anonymous /data volume (by name)."""
    run(["podman", "rm", "--force", "--volumes", "--time", "5", node.name], check=False)


@pytest.fixture(scope="module")
def node(image: str) -> Iterator[Node]:
    """One containerised node per test module."""
    started = start_node(image)
    try:
        yield started
    finally:
        remove_node(started)

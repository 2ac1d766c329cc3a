"""The image from the Dockerfile: non-root, /healthz, a consultation through it, SIGTERM drains.

Host networking keeps every address on 127.0.0.1 (the node listens there, its ICE host
candidates are 127.0.0.1, and so are the participants'): the port the node listens on is the
port the host sees, with no NAT in between.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from fortrolig.media import aiortc_hooks as hooks
from tests.deploy.conftest import Node, remove_node, run, start_node
from tests.support.polling import eventually

# The first run on a machine installs Podman, makes the base image and builds every layer.
pytestmark = pytest.mark.timeout(1200)

DOCKER_STOP_GRACE_S = 10  # `docker stop`'s default before SIGKILL


def participant(node: Node, token: str, colour: tuple[int, int, int]) -> Participant:
    tracks = [PatternVideoTrack(*colour, 320, 240, 30), ToneAudioTrack()]
    return Participant(node.ws_url, token, tracks=tracks)


def test_runs_as_non_root_with_tini_as_pid_1_and_no_compiler(node: Node) -> None:
    uid = node.exec("id", "-u")
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid
    config = node.inspect()["Config"]
    assert isinstance(config, dict) and config["User"] == "10001:10001"
    # The server itself (not only an exec'd shell) runs as that user.
    top = run(["podman", "top", node.name, "user", "args"]).stdout
    server_lines = [line for line in top.splitlines() if "fortrolig serve" in line]
    assert server_lines and all(line.split()[0] == "fortrolig" for line in server_lines), top
    assert node.exec("cat", "/proc/1/comm").stdout.strip() == "tini"
    assert node.exec("sh", "-c", "command -v gcc || command -v cc").returncode != 0
    # The data volume belongs to that user and is private.
    assert node.exec("stat", "-c", "%u %a", "/data").stdout.split() == ["10001", "700"]


def test_answers_healthz_and_its_healthcheck(node: Node) -> None:
    with urllib.request.urlopen(node.base_url + "/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"status": "ok"}
    healthcheck = node.inspect()["Config"]
    assert isinstance(healthcheck, dict)
    assert healthcheck["Healthcheck"]["Test"][0] == "CMD"
    # The image's HEALTHCHECK command, run by Podman inside the container.
    assert run(["podman", "healthcheck", "run", node.name], check=False).returncode == 0


async def test_consultation_through_the_container(node: Node) -> None:
    session = node.session()
    a = participant(node, session["practitioner_token"], (82, 90, 240))
    b = participant(node, session["client_token"], (145, 54, 34))
    await a.start()
    await b.start()
    try:
        for viewer, publisher in ((a, b), (b, a)):
            for kind, frames in (("video", 30), ("audio", 50)):
                await eventually(
                    lambda v=viewer, p=publisher, k=kind, n=frames: (
                        v.frames_from(p.participant_id or "", k) > n
                    ),
                    20,
                    f"{kind} to {viewer.participant_id}",
                )
        await a.send({"type": "chat", "text": "Goddag", "id": "m1"})
        got = await b.expect("chat")
        assert (got["from_id"], got["text"]) == (a.participant_id, "Goddag")
        for p in (a, b):
            assert p.pc is not None
            profiles = {hooks.selected_srtp_profile(d) for d in hooks.dtls_transports(p.pc)}
            assert profiles == {"SRTP_AEAD_AES_256_GCM"}
    finally:
        await a.close()
        await b.close()


async def test_sigterm_drains_and_exits_cleanly(image: str) -> None:
    """SIGTERM reaches the server through tini; it exits 0 well within docker's grace period,
    with a participant still connected."""
    node = start_node(image)
    try:
        session = node.session()
        a = participant(node, session["practitioner_token"], (41, 240, 110))
        await a.start()
        try:
            start = time.monotonic()
            run(["podman", "kill", "--signal", "TERM", node.name])
            waited = await asyncio.to_thread(
                run, ["podman", "wait", node.name], DOCKER_STOP_GRACE_S + 5
            )
            elapsed = time.monotonic() - start
        finally:
            await a.close()
        assert waited.stdout.strip() == "0", node.logs()
        assert elapsed < DOCKER_STOP_GRACE_S, (elapsed, node.logs())
        state = node.inspect()["State"]
        assert isinstance(state, dict) and state["ExitCode"] == 0 and not state["OOMKilled"]
    finally:
        remove_node(node)

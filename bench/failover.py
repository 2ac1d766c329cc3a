"""Failover: join latency and how long media is gone when a room's owner node is killed.

    .venv/bin/python -m bench.failover --out docs/bench-failover.json     (`make bench-failover`)
    .venv/bin/python -m bench.failover --kills 3 --out /tmp/failover.json (smoke)

Three ``fortrolig serve --media-workers 1`` nodes of one region on 127.0.0.1 share a real
PostgreSQL (records) and a real redis-server, with the *default* coordination timings
(heartbeat 1 s, node TTL 3 s, lease 20 s). Each round: a new room, two programmatic participants
(aiortc, VP8 320x240@15 + Opus) that resume by themselves and know every node's WebSocket (what a
load balancer in front of the nodes gives a browser); join latency = from ``connect()`` to the
first video frame from the other side, for each; then SIGKILL of the room's owner and the time
until frames from the other side grow again on *both* sides ("media back"); then the killed node
is started again so that three nodes stay up. Reported: p50 / p95 / max of both over ``--kills``
rounds, and the run's machine and commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fortrolig.loadtests.participant import Participant  # noqa: E402
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack  # noqa: E402
from tests.support.cluster import TestCluster  # noqa: E402
from tests.support.postgres_server import TempPostgres  # noqa: E402
from tests.support.redis_server import TempRedis  # noqa: E402

from .common import short_commit  # noqa: E402

DEFAULTS = {  # the shipped defaults (TestCluster's are faster, for tests)
    "FORTROLIG_COORDINATION__HEARTBEAT_S": "1",
    "FORTROLIG_COORDINATION__NODE_TTL_S": "3",
    "FORTROLIG_COORDINATION__LEASE_TTL_S": "20",
    "FORTROLIG_COORDINATION__REDIS_TIMEOUT_S": "1",
}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _stat(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_s": _pct(values, 50),
        "p95_s": _pct(values, 95),
        "max_s": max(values) if values else None,
    }


def _frames(a: Participant, b: Participant) -> tuple[int, int]:
    return (
        a.frames_from(b.participant_id or "", "video"),
        b.frames_from(a.participant_id or "", "video"),
    )


async def _until_media(a: Participant, b: Participant, limit: float) -> float:
    start = time.monotonic()
    fa, fb = _frames(a, b)
    while True:
        na, nb = _frames(a, b)
        if na > fa + 3 and nb > fb + 3:
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            raise TimeoutError("media did not come back")
        await asyncio.sleep(0.02)


async def _round(cluster: TestCluster, index: int) -> dict[str, Any]:
    nodes = cluster.nodes
    doors = [n.ws_url for n in nodes]
    room = cluster.create_room(nodes[index % len(nodes)])
    people = []
    for k, role in enumerate(("practitioner", "client")):
        token = cluster.join_token(nodes[0], room, role)
        tracks = [PatternVideoTrack(80 + 60 * k, 90, 200, 320, 240, 15), ToneAudioTrack()]
        p = Participant(doors[(index + k) % len(doors)], token, tracks=tracks, auto_resume=True)
        p.doors = doors
        people.append(p)
    a, b = people
    try:
        started = time.monotonic()
        await a.start()
        await b.start()
        while min(_frames(a, b)) == 0:
            if time.monotonic() - started > 20:
                raise TimeoutError("no first frames")
            await asyncio.sleep(0.01)
        joined = time.monotonic() - started
        owner_name = cluster.owner_of(room, nodes[0])
        owner = cluster.node(owner_name or "")
        await _until_media(a, b, 10)
        killed = time.monotonic()
        cluster.kill(owner)
        await _until_media(a, b, 60)
        media_back = time.monotonic() - killed
        cluster.start(owner)  # three nodes again for the next round
        return {"join_s": joined, "media_back_s": media_back, "owner": owner.name}
    finally:
        await a.close()
        await b.close()


async def run(kills: int, folder: Path) -> dict[str, Any]:
    pg = TempPostgres()
    pg.start()
    redis = TempRedis(folder)
    redis.start()
    cluster = TestCluster(folder, redis, pg.dsn)
    try:
        for i in range(3):
            cluster.add(f"node-{i + 1}", "eu-north", **DEFAULTS)
        rounds = []
        for i in range(kills):
            result = await _round(cluster, i)
            print(json.dumps({"round": i + 1, **result}), flush=True)
            rounds.append(result)
        return {
            "join": _stat([r["join_s"] for r in rounds]),
            "media_back_after_owner_kill": _stat([r["media_back_s"] for r in rounds]),
            "rounds": rounds,
        }
    finally:
        cluster.stop_all()
        redis.stop()
        pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fortrolig-failover-") as tmp:
        results = asyncio.run(run(args.kills, Path(tmp)))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    results["commit"] = short_commit()
    results["timings"] = DEFAULTS
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("join", "media_back_after_owner_kill")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

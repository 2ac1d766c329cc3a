"""`fortrolig nodes` and `fortrolig node drain`: the operator's view of the cluster.

Both read the node registry from the coordination store named by ``coordination.redis_url``
(there is no cluster to list with in-process coordination: one node, stopped by SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from fortrolig.coordination.base import NodeInfo
from fortrolig.coordination.redis_store import RedisCoordination
from fortrolig.core.config import Config, load_config
from fortrolig.core.errors import ConfigError, NotFound

from .cluster_ctx import redis_coordination


def _coordination(args: argparse.Namespace) -> tuple[Config, RedisCoordination]:
    import os

    config = load_config(args.config, os.environ)
    coord = redis_coordination(config)
    if coord is None:
        raise ConfigError(
            "coordination.redis_url is not set: one node with in-process coordination "
            "(stop it with SIGTERM to drain it)",
            code="no_cluster",
        )
    return config, coord


async def _nodes(coord: RedisCoordination) -> list[NodeInfo]:
    await coord.start()
    try:
        return sorted(await coord.nodes(), key=lambda n: (n.region, n.node_id))
    finally:
        await coord.close()


def cmd_nodes(args: argparse.Namespace) -> int:
    """List the live nodes: region, rooms, participants, load, draining, heartbeat age."""
    _config, coord = _coordination(args)
    nodes = asyncio.run(_nodes(coord))
    now = time.time()
    rows: list[dict[str, Any]] = [
        {
            "node_id": n.node_id,
            "region": n.region,
            "url": n.url,
            "rooms": n.rooms,
            "participants": n.participants,
            "load": n.load,
            "draining": n.draining,
            "heartbeat_age_s": round(max(0.0, now - n.heartbeat_at), 1),
            "up_s": round(max(0.0, now - n.started_at)),
        }
        for n in nodes
    ]
    if args.json:
        print(json.dumps({"nodes": rows}))
        return 0
    header = f"{'NODE':<20} {'REGION':<12} {'ROOMS':>5} {'PEOPLE':>6} {'LOAD':>6} {'STATE':<9} URL"
    print(header)
    for r in rows:
        state = "draining" if r["draining"] else "ready"
        print(
            f"{r['node_id']:<20} {r['region']:<12} {r['rooms']:>5} {r['participants']:>6} "
            f"{r['load']:>6.1f} {state:<9} {r['url']}"
        )
    if not rows:
        print("(no live node)", file=sys.stderr)
    return 0


def cmd_node_drain(args: argparse.Namespace) -> int:
    """Ask a node to drain: it takes no new rooms, lets live ones run up to
    ``coordination.drain_deadline_s``, then hands them over. It keeps running."""
    _config, coord = _coordination(args)

    async def run() -> None:
        await coord.start()
        try:
            if args.node_id not in {n.node_id for n in await coord.nodes()}:
                raise NotFound(f"no live node {args.node_id!r}", code="node_not_found")
            await coord.request_drain(args.node_id)
        finally:
            await coord.close()

    asyncio.run(run())
    print(f"drain requested for {args.node_id}; `fortrolig nodes` shows it as draining")
    return 0


def add_parsers(sub: Any) -> None:
    """Add `nodes` and `node drain` to the `fortrolig` command."""
    nodes = sub.add_parser("nodes", help="list the live nodes of the cluster (needs Redis)")
    nodes.add_argument("--config", type=Path)
    nodes.add_argument("--json", action="store_true", help="print one JSON object")
    nodes.set_defaults(func=cmd_nodes)
    node = sub.add_parser("node", help="one node of the cluster")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    drain = node_sub.add_parser("drain", help="stop a node taking rooms and move its rooms")
    drain.add_argument("node_id")
    drain.add_argument("--config", type=Path)
    drain.set_defaults(func=cmd_node_drain)

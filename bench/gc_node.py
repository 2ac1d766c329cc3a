"""``fortrolig serve`` with the garbage collector's pauses logged (a diagnostic wrapper).

    python -m bench.gc_node serve --media-workers 1 ...     (bench.websockets --gc-log)

Every collection of generation 2, and any collection that took more than 5 ms, is written to
stderr as ``gc: generation G took X ms (collected C, tracked objects T)``.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

SLOW_S = 0.005


def install() -> None:
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if info["generation"] == 2 or took > SLOW_S:
            print(
                f"gc: generation {info['generation']} took {took * 1000:.1f} ms "
                f"(collected {info['collected']}, tracked objects {len(gc.get_objects())})",
                file=sys.stderr,
                flush=True,
            )

    gc.callbacks.append(callback)


if __name__ == "__main__":
    from fortrolig.app.cli import main

    install()
    sys.exit(main(sys.argv[1:]))

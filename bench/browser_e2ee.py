"""Browser CPU of a consultation with and without end-to-end encrypted media.

    .venv/bin/python -m bench.browser_e2ee --out docs/bench-browser-e2ee.json  (make bench-browser)

What it runs: a fresh ``fortrolig serve --media-workers 1`` on 127.0.0.1 (pinned to the server
core), and one headless Chromium (pinned to the other core) holding both ends of a 1:1
consultation: the practitioner's and the client's room page, each sending Chromium's fake
camera (the page asks for 640x480 at 30 fps; the fake device gives 20) and microphone. Once
both decode each other's video, the CPU of the whole Chromium process tree (browser, renderers,
GPU and network processes) is read over a steady window, and the server's too.

* ``e2ee``: the default; every frame goes through the page's encoded transform (AES-256-GCM in a
  worker, docs/protocol.md "End-to-end encrypted media").
* ``clear``: the same pages with the encoded-transform APIs removed before they load (as in a
  browser that has none) on both pages: no transform is attached at all (a practitioner whose
  own browser cannot encrypt has nothing to decide; both pages say "not end-to-end encrypted").

Modes alternate within each repeat (e2ee, clear, clear, e2ee, ...) so that drift on the machine
does not favour one. The figure is CPU % of one core for the two pages together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from .capacity import BIN, free_port, start_server, stop, tree_cpu_s
from .common import CLIENT_CORE, short_commit
from .sfu_bench import machine

CHROMIUM = os.environ.get("FORTROLIG_CHROMIUM", "/usr/bin/chromium")
WITHOUT_TRANSFORMS = """
delete window.RTCRtpScriptTransform;
delete RTCRtpSender.prototype.createEncodedStreams;
delete RTCRtpReceiver.prototype.createEncodedStreams;
"""
MODES = ("e2ee", "clear")


def chromium_args(marker: str) -> list[str]:
    """The e2e tests' flags (fake devices, loopback ICE), and a marker to find the process."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        marker,
    ]


def browser_pid(marker: str) -> int:
    """The Chromium browser process launched with ``marker`` (its children are the rest)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in args and not any(a.startswith(b"--type=") for a in args):
            return int(entry)
    raise RuntimeError("the benchmark's Chromium process was not found")


def new_session(base_url: str, data_dir: str) -> dict[str, Any]:
    cmd = [str(BIN / "fortrolig"), "session", "create", "--json", "--data-dir", data_dir]
    cmd += ["--base-url", base_url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)
    return dict(json.loads(out.stdout))


async def join(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await page.wait_for_function("window.fortrolig !== undefined")
    await page.wait_for_selector("#join-btn:not([disabled])")
    await page.fill("#name-input", name)
    await page.click("#join-btn")


async def video_frames(page: Page) -> int:
    stats = await page.evaluate("window.fortrolig.stats()") or {}
    return sum(
        int(s.get("framesDecoded") or 0)
        for s in stats.get("inbound", [])
        if s.get("kind") == "video" and s.get("active")
    )


async def wait_decoding(pages: list[Page], limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if all([await video_frames(p) > 60 for p in pages]):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the pages did not decode each other's video")


async def one_run(
    mode: str, base_url: str, data_dir: str, window_s: float, server_pid: int
) -> dict[str, Any]:
    session = new_session(base_url, data_dir)
    marker = f"--fortrolig-bench-{uuid.uuid4().hex}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(marker), headless=True
        )
        try:
            pid = browser_pid(marker)
            os.sched_setaffinity(pid, {CLIENT_CORE})  # children inherit it from here on
            pages = []
            for role, name in (("practitioner", "Dr. Bench"), ("client", "Klient")):
                context = await browser.new_context(viewport={"width": 640, "height": 480})
                page = await context.new_page()
                if mode == "clear":
                    await page.add_init_script(WITHOUT_TRANSFORMS)
                await join(page, session[f"{role}_url"], name)
                pages.append(page)
            await wait_decoding(pages)
            state = await pages[0].evaluate("window.fortrolig.e2ee()")
            if (state or {}).get("mode") != ("on" if mode == "e2ee" else "off"):
                raise RuntimeError(f"{mode}: the page says {state}")
            await asyncio.sleep(3)  # settle after the ramp-up of the bitrate
            b0, s0, f0, t0 = (
                tree_cpu_s(pid),
                tree_cpu_s(server_pid),
                await video_frames(pages[0]),
                time.monotonic(),
            )
            await asyncio.sleep(window_s)
            b1, s1, f1, t1 = (
                tree_cpu_s(pid),
                tree_cpu_s(server_pid),
                await video_frames(pages[0]),
                time.monotonic(),
            )
            wall = t1 - t0
            return {
                "mode": mode,
                "browser_cpu_pct": round(100 * (b1 - b0) / wall, 1),
                "server_cpu_pct": round(100 * (s1 - s0) / wall, 1),
                "practitioner_fps": round((f1 - f0) / wall, 1),
                "window_s": round(wall, 1),
            }
        finally:
            await browser.close()


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        cpu = [r["browser_cpu_pct"] for r in runs if r["mode"] == mode]
        out[mode] = {
            "browser_cpu_pct_median": round(statistics.median(cpu), 1),
            "min": min(cpu),
            "max": max(cpu),
            "fps_median": statistics.median(
                r["practitioner_fps"] for r in runs if r["mode"] == mode
            ),
        }
    out["e2ee_over_clear"] = round(
        out["e2ee"]["browser_cpu_pct_median"] / out["clear"]["browser_cpu_pct_median"], 3
    )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fortrolig-bench-browser-") as tmp:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(os.path.join(tmp, "data"), port, os.path.join(tmp, "server.log"))
        try:
            for repeat in range(args.repeats):
                order = MODES if repeat % 2 == 0 else MODES[::-1]
                for mode in order:
                    run = await one_run(
                        mode, base_url, os.path.join(tmp, "data"), args.window, server.pid
                    )
                    print(json.dumps(run), file=sys.stderr)
                    runs.append(run)
        finally:
            stop(server)
    commit = short_commit()
    return {
        "machine": machine(),
        "commit": commit,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": runs,
        "summary": summary(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="steady window per run, s")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()

"""Debian's firefox-esr, driven over WebDriver BiDi by tests/firefox/driver.js (puppeteer-core).

Playwright drives only its own Firefox builds; a stock Firefox speaks WebDriver BiDi, which
Puppeteer drives. The Node driver is one long-lived process per test speaking JSON lines (open a
page, go to a URL, evaluate an expression, click, type, screenshot); the test itself, and every
assertion, stays in Python. :class:`FirefoxPage` offers the part of
:class:`tests.e2e.conftest.RoomPage` the tests use (``wait_state``, ``participant_id``,
``stats``), so the helpers of the Chromium tests work on it too.

Firefox runs headless with a fresh profile in the test's folder, a fake camera and microphone,
no STUN server but the page's, and nothing that phones home: every request to anything but
127.0.0.1 goes to a proxy on 127.0.0.1 where nothing listens.

ICE cannot be kept on 127.0.0.1 in Firefox as it is in Chromium: its parent process lists the
interfaces for every page and never offers loopback (``media.peerconnection.ice.loopback`` only
reaches the process that runs ICE, and ``media.peerconnection.ice.force_interface`` is not
applied to the parent's list), so on the host its candidates would be this machine's own
addresses, which tests must not use. The tests therefore run Firefox (the driver and every
process it starts) in a network namespace of their own (``namespace``, built by
tests/support/impaired_net.py), whose only address is the client side of a veth link to the
node's namespace; ``origins`` are the node's plain-http origins there, which Firefox then treats
as secure and reaches without the dead-end proxy. :meth:`Firefox.off_host` checks that no socket
of Firefox talks to anything but ``allowed`` addresses (and loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.npm import npm_ci

FIREFOX = os.environ.get("FORTROLIG_FIREFOX", "/usr/bin/firefox-esr")
DRIVER_DIR = Path(__file__).resolve().parents[1] / "firefox"
# A port nothing listens on (the discard service is never run here): whatever Firefox would
# fetch from the Internet fails at once on 127.0.0.1.
DEAD_END = ("127.0.0.1", 9)

PREFS: dict[str, Any] = {
    # A fake camera (a moving picture) and microphone (a tone); no permission prompt, and media
    # elements may play sound without a click (as after the user's click on Join).
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    # ICE: the node's 127.0.0.1 may be paired with (without it Firefox ignores the node's checks
    # from there), host candidates with their address (no mDNS names, which the node does not
    # resolve), UDP only, no STUN server but the page's (the server's ice_servers list).
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.tcp": False,
    "media.peerconnection.default_iceservers": "[]",
    # Everything that is not 127.0.0.1 goes to the dead end (localhost is never proxied).
    "network.proxy.type": 1,
    "network.proxy.http": DEAD_END[0],
    "network.proxy.http_port": DEAD_END[1],
    "network.proxy.share_proxy_settings": True,
    "network.proxy.ssl": DEAD_END[0],
    "network.proxy.ssl_port": DEAD_END[1],
    "network.proxy.no_proxies_on": "",
    "network.proxy.allow_hijacking_localhost": False,
    "network.trr.mode": 5,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    # ... and nothing asks: no telemetry, studies, updates, safe browsing, captive-portal or
    # connectivity probes, remote settings, push, region or geolocation lookups, plugin downloads.
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.newProfilePing.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "toolkit.telemetry.updatePing.enabled": False,
    "toolkit.telemetry.bhrPing.enabled": False,
    "datareporting.usage.uploadEnabled": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "app.update.auto": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "captivedetect.canonicalURL": "",
    "network.connectivity-service.enabled": False,
    "services.settings.server": f"http://{DEAD_END[0]}:{DEAD_END[1]}/",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": "",
    "browser.region.update.enabled": False,
    "browser.region.network.url": "",
    "geo.enabled": False,
    "geo.provider.network.url": "",
    "media.gmp-manager.url": "",
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-gmpopenh264.autoupdate": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.topsites.contile.enabled": False,
    "intl.accept_languages": "en-GB, en",
}


class FirefoxError(RuntimeError):
    """The driver or Firefox refused a request (the message is the driver's)."""


class Driver:
    """The Node driver process: one request at a time, answered in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lock = asyncio.Lock()
        self.next_id = 0
        self.version = ""

    async def read_line(self, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            raise FirefoxError(f"the Firefox driver exited ({self.proc.returncode})")
        return dict(json.loads(line))

    async def request(self, op: str, within: float = 30, **args: Any) -> Any:
        async with self.lock:
            self.next_id += 1
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"id": self.next_id, "op": op, **args}).encode())
            self.proc.stdin.write(b"\n")
            await self.proc.stdin.drain()
            answer = await self.read_line(within)
        if answer.get("id") != self.next_id:
            raise FirefoxError(f"answer out of order: {answer}")
        if "error" in answer:
            raise FirefoxError(f"{op}: {answer['error']}")
        return answer.get("value")


@dataclass
class FirefoxPage:
    """One participant's page in Firefox (its own user context: storage, cookies)."""

    driver: Driver
    page_id: str
    name: str
    console: list[str] = field(default_factory=list)

    async def evaluate(self, expression: str, within: float = 30) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        return await self.driver.request(
            "evaluate", within, page=self.page_id, expression=expression
        )

    async def preload(self, source: str) -> None:
        """Run ``source`` in every document this page loads from now on, before its scripts."""
        await self.driver.request("preload", page=self.page_id, source=source)

    async def goto(self, url: str) -> None:
        await self.driver.request("goto", page=self.page_id, url=url)

    async def click(self, selector: str) -> None:
        await self.driver.request("click", page=self.page_id, selector=selector)

    async def fill(self, selector: str, text: str) -> None:
        await self.driver.request("fill", page=self.page_id, selector=selector, text=text)

    async def wait_for(self, expression: str, within: float = 15.0) -> Any:
        """The expression's value once it is truthy; fails the test after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s on {self.name}: {expression}")
            await asyncio.sleep(0.1)

    async def state(self) -> str:
        return str(await self.evaluate("window.fortrolig.state"))

    async def wait_state(self, state: str, within: float = 15.0) -> None:
        expression = f"window.fortrolig && window.fortrolig.state === {json.dumps(state)}"
        try:
            await self.wait_for(expression, within)
        except AssertionError:
            states = await self.evaluate("window.fortrolig ? window.fortrolig.states() : null")
            raise AssertionError(f"{self.name} not {state} within {within} s: {states}") from None

    async def stats(self) -> dict[str, Any]:
        return dict(await self.evaluate("window.fortrolig.stats()") or {})

    async def participant_id(self) -> str:
        return str(await self.evaluate("window.fortrolig.participantId"))

    async def visible(self, selector: str) -> bool:
        """Whether the element is in the page and not hidden (nor inside something hidden)."""
        sel = json.dumps(selector)
        return bool(await self.evaluate(f"document.querySelector({sel})?.checkVisibility()"))

    async def text(self, selector: str) -> str:
        sel = json.dumps(selector)
        return str(await self.evaluate(f"document.querySelector({sel})?.textContent ?? ''"))

    async def screenshot(self, folder: Path, label: str) -> Path:
        path = folder / f"{label}-{self.name}.png"
        await self.driver.request("screenshot", page=self.page_id, path=str(path))
        return path

    async def prejoin(self, join: bool = True) -> None:
        """On the room page: wait for the preview and the Join button, type the name, join."""
        await self.wait_for("window.fortrolig !== undefined")
        await self.wait_for("!document.querySelector('#join-btn').disabled")
        await self.fill("#name-input", self.name)
        if join:
            await self.click("#join-btn")


class Firefox:
    """Opens room pages, one user context each; writes their console logs when closed."""

    def __init__(self, driver: Driver, out: Path, allowed: tuple[str, ...] = ()) -> None:
        self.driver = driver
        self.out = out
        self.allowed = {ipaddress.ip_address(a) for a in allowed}
        self.pages: list[FirefoxPage] = []

    async def new_page(self, name: str, viewport: tuple[int, int] = (1280, 800)) -> FirefoxPage:
        page_id = await self.driver.request("new_page", width=viewport[0], height=viewport[1])
        page = FirefoxPage(self.driver, str(page_id), name)
        self.pages.append(page)
        return page

    async def open(self, url: str, name: str, join: bool = True) -> FirefoxPage:
        page = await self.new_page(name)
        await page.goto(url)
        await page.prejoin(join)
        return page

    def off_host(self) -> list[str]:
        """Sockets of the driver, Firefox or its content processes whose peer is neither
        loopback nor one of ``allowed`` (the test namespace's addresses): empty while the
        network rule holds."""
        pids = [self.driver.proc.pid, *descendants(self.driver.proc.pid)]
        return foreign_peers(pids, self.allowed)

    async def save_consoles(self) -> None:
        for page in self.pages:
            with contextlib.suppress(FirefoxError, TimeoutError):
                lines = await self.driver.request("console", 10, page=page.page_id)
                page.console = [str(x) for x in lines]
            (self.out / f"console-firefox-{page.name}.txt").write_text("\n".join(page.console))


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every process under ``root`` (children, theirs, ...) with its start time (so that a
    reused PID is never taken for one of them)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    found: dict[int, int] = {}
    parents = {root}
    while parents:
        children = {pid for pid, (ppid, _) in table.items() if ppid in parents}
        children -= found.keys()
        found.update({pid: table[pid][1] for pid in children})
        parents = children
    return found


def foreign_peers(
    pids: list[int], allowed: set[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> list[str]:
    """TCP/UDP sockets of these processes connected to anything but loopback or ``allowed``
    (read in the processes' own network namespace: /proc/<pid>/net)."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    foreign = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{pids[0]}/net/{table}").read_text().splitlines()[1:]:
                cols = row.split()
                peer = _address(cols[2].rsplit(":", 1)[0])
                if cols[9] in inodes and not (
                    peer.is_unspecified or peer.is_loopback or peer in allowed
                ):
                    foreign.append(f"{table} {cols[1]} -> {peer}")
    return foreign


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/{tcp,udp}[6] write it (32-bit words in host byte order)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    v6 = ipaddress.IPv6Address(words)
    return v6.ipv4_mapped or v6


@contextlib.asynccontextmanager
async def launch_firefox(
    out: Path, namespace: str, origins: tuple[str, ...], allowed: tuple[str, ...]
) -> AsyncIterator[Firefox]:
    """A fresh headless Firefox with its profile in ``out``, run in network ``namespace``;
    ``origins`` (http://host:port) count as secure and bypass the dead-end proxy, and its
    sockets may talk to ``allowed``. Every process of it (the Node driver, Firefox and its
    content processes) is gone when the block ends."""
    if not shutil.which(FIREFOX):
        raise RuntimeError(f"Firefox not found at {FIREFOX}: run `make deps-system`")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to drive Firefox (tests/firefox)")
    npm_ci(DRIVER_DIR, "puppeteer-core")
    hosts = sorted({urllib.parse.urlsplit(o).hostname or "" for o in origins} - {""})
    prefs = {
        **PREFS,
        "network.proxy.no_proxies_on": ", ".join(hosts),
        "dom.securecontext.allowlist": ",".join(hosts),
    }
    profile = out / "firefox-profile"
    profile.mkdir()
    config = out / "firefox-driver.json"
    config.write_text(
        json.dumps({"executablePath": FIREFOX, "profileDir": str(profile), "prefs": prefs})
    )
    log = (out / "firefox-driver.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "ip",
        "netns",
        "exec",
        namespace,
        node,
        str(DRIVER_DIR / "driver.js"),
        str(config),
        cwd=DRIVER_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
    )
    driver = Driver(proc)
    holder = Firefox(driver, out, allowed)
    try:
        ready = await driver.read_line(60)
        driver.version = str(ready.get("version"))
        with (out / "browser-version.txt").open("a") as f:  # beside Chromium's, if it runs
            f.write(f"Firefox {driver.version}\n")
        yield holder
    finally:
        await holder.save_consoles()
        await _stop(driver, proc)
        log.close()


async def _stop(driver: Driver, proc: asyncio.subprocess.Process) -> None:
    tree = descendants(proc.pid)  # Firefox and its content processes, before they exit
    with contextlib.suppress(FirefoxError, TimeoutError, ConnectionError, OSError):
        await driver.request("quit", 10)
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.terminate()  # the driver closes Firefox on SIGTERM
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(tree):  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # Firefox's processes exit on their own after close()
    for pid in _alive(tree):  # only processes this launch started, by PID
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(tree: dict[int, int]) -> list[int]:
    return [pid for pid, started in tree.items() if (_stat(pid) or (0, -1))[1] == started]

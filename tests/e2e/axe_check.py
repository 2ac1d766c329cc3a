"""axe-core in a page: the vendored tests/support/axe/axe.min.js (npm ``axe-core``, MPL-2.0,
its licence beside it) evaluated through the DevTools protocol — the pages' CSP allows only
their own scripts, and an evaluation from the driver is not a page script — then ``axe.run``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent.parent / "support" / "axe" / "axe.min.js"
BLOCKING = ("serious", "critical")

_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


@cache
def _source() -> str:
    return AXE.read_text(encoding="utf-8")


async def violations(page: Any) -> list[dict[str, Any]]:
    """Every axe violation on the page as it is now (injecting axe once per document)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(_source() + "\n;undefined")
    return list(await page.evaluate(_RUN))


async def assert_accessible(page: Any, label: str) -> None:
    """No serious or critical axe violation on the page in its current state."""
    found = [v for v in await violations(page) if v.get("impact") in BLOCKING]
    assert not found, f"{label}: {found}"

"""The soak's verdict from its samples: pure functions (no I/O), unit-tested.

A series is a list of ``(t_s, value)`` pairs, ``t_s`` seconds since the churn started. The first
``warmup`` part of the run is cut (caches fill, the allocator's arenas and aiortc's codecs warm
up); what is left is compared between its start and its end:

* **baseline** = the median of the first ``window`` samples after the cut;
* **end** = the median of the last ``window`` samples;
* **growth %** = 100 · (end − baseline) / baseline.

Medians over a few samples, not single readings: consultations come and go, so a reading taken
while four calls run and one taken between two calls differ without anything leaking. The least
squares slope over the whole post-warm-up part, in % of the baseline per hour, is reported next
to it (a leak shows as a steady slope, churn noise does not).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Series = Sequence[tuple[float, float]]

GROWTH_LIMIT_PCT = 10.0


@dataclass(frozen=True)
class Growth:
    """One resource's growth between the warm-up end and the run's end."""

    resource: str
    samples: int  # samples after the warm-up cut
    baseline: float | None
    end: float | None
    growth_pct: float | None
    slope_pct_per_h: float | None
    min: float | None
    max: float | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "samples": self.samples,
            "baseline": self.baseline,
            "end": self.end,
            "growth_pct": self.growth_pct,
            "slope_pct_per_h": self.slope_pct_per_h,
            "min": self.min,
            "max": self.max,
            "ok": self.ok,
        }


def warmup_cut_s(
    duration_s: float, warmup_s: float | None, warmup_frac: float, floor_s: float = 0.0
) -> float:
    """Seconds cut at the start: ``warmup_s`` when given, else ``warmup_frac`` of the run but
    at least ``floor_s`` (and at most half the run, so that something is left to judge)."""
    if warmup_s is not None:
        return max(0.0, warmup_s)
    return max(0.0, min(max(duration_s * warmup_frac, floor_s), duration_s / 2))


def after_warmup(series: Series, cut_s: float) -> list[tuple[float, float]]:
    """The samples taken at or after ``cut_s``."""
    return [(t, v) for t, v in series if t >= cut_s]


def window_size(samples: int, frac: float = 0.1, minimum: int = 3) -> int:
    """How many samples each end's median takes: ``frac`` of them, at least ``minimum``, at most
    half (so that baseline and end never share a sample when there are enough)."""
    if samples <= 0:
        return 0
    return max(1, min(samples // 2 or 1, max(minimum, math.ceil(samples * frac))))


def slope_per_h(points: Series) -> float | None:
    """Least squares slope of value over time, per hour (None under two distinct times)."""
    if len(points) < 2:
        return None
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx * 3600.0


def growth(
    resource: str,
    series: Series,
    cut_s: float,
    limit_pct: float = GROWTH_LIMIT_PCT,
    window_frac: float = 0.1,
) -> Growth:
    """Baseline after the warm-up vs the end of one series, judged against ``limit_pct``.

    A series with no sample after the cut cannot pass: a soak that measured nothing says
    nothing. A zero baseline passes only if the end is zero too.
    """
    points = after_warmup(series, cut_s)
    if not points:
        return Growth(resource, 0, None, None, None, None, None, None, False)
    n = window_size(len(points), window_frac)
    values = [v for _, v in points]
    baseline = statistics.median(values[:n])
    end = statistics.median(values[-n:])
    slope = slope_per_h(points)
    if baseline == 0:
        pct = 0.0 if end == 0 else math.inf
        slope_pct = None
    else:
        pct = 100.0 * (end - baseline) / baseline
        slope_pct = None if slope is None else 100.0 * slope / baseline
    return Growth(
        resource,
        len(points),
        baseline,
        end,
        pct,
        slope_pct,
        min(values),
        max(values),
        pct < limit_pct,
    )


def summarize(
    series: Mapping[str, Series],
    duration_s: float,
    *,
    warmup_s: float | None = None,
    warmup_frac: float = 0.1,
    warmup_floor_s: float = 0.0,
    limit_pct: float = GROWTH_LIMIT_PCT,
    errors: int = 0,
) -> dict[str, Any]:
    """Every resource's growth and the run's verdict: PASS when each grew less than
    ``limit_pct`` and no error happened."""
    cut = warmup_cut_s(duration_s, warmup_s, warmup_frac, warmup_floor_s)
    results = [growth(name, s, cut, limit_pct) for name, s in series.items()]
    passed = bool(results) and all(g.ok for g in results) and errors == 0
    return {
        "warmup_cut_s": cut,
        "limit_pct": limit_pct,
        "resources": {g.resource: g.to_dict() for g in results},
        "errors": errors,
        "verdict": "PASS" if passed else "FAIL",
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a small text table."""
    lines = [
        f"warm-up cut {summary['warmup_cut_s']:.0f} s, limit {summary['limit_pct']:g} %",
        f"{'resource':<28} {'baseline':>12} {'end':>12} {'growth %':>9} {'%/h':>8}  ok",
    ]
    for name, g in summary["resources"].items():
        lines.append(
            f"{name:<28} {_num(g['baseline']):>12} {_num(g['end']):>12} "
            f"{_num(g['growth_pct'], 1):>9} {_num(g['slope_pct_per_h'], 1):>8}  "
            f"{'yes' if g['ok'] else 'NO'}"
        )
    lines.append(f"errors: {summary['errors']}  verdict: {summary['verdict']}")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"

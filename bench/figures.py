"""Pure arithmetic the memory and WebSocket benchmarks share: fits, percentiles, spreads, and
the loopback source addresses the WebSocket holders connect from."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Source addresses of the WebSocket holders: 127.10.0.1 upwards (all of 127.0.0.0/8 is loopback
# on Linux), 250 hosts per /24 so that no address ends in .0 or .255.
HOLDER_NET = (127, 10)
HOSTS_PER_NET = 250


@dataclass(frozen=True, slots=True)
class Line:
    """y = intercept + slope·x by least squares, with the residuals' standard deviation."""

    intercept: float
    slope: float
    residual_sd: float
    points: int


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Line | None:
    """Least squares over paired values; None with fewer than two distinct x."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys, strict=True)]
    dof = len(xs) - 2
    sd = math.sqrt(sum(r * r for r in residuals) / dof) if dof > 0 else 0.0
    return Line(intercept, slope, sd, len(xs))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be in 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of repeats (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def source_address(index: int) -> str:
    """The ``index``-th holder source address: 127.10.0.1 … 127.10.0.250, 127.10.1.1, …"""
    if index < 0 or index >= 256 * HOSTS_PER_NET:
        raise ValueError("source address index out of range")
    net, host = divmod(index, HOSTS_PER_NET)
    return f"{HOLDER_NET[0]}.{HOLDER_NET[1]}.{net}.{host + 1}"


def addresses_needed(connections: int, per_address: int) -> int:
    """How many source addresses hold ``connections`` at ``per_address`` each."""
    if per_address < 1:
        raise ValueError("per_address must be at least 1")
    return -(-connections // per_address)

"""Prometheus metrics: the one home of prometheus_client.

Hot paths (the SFU's per-packet code) keep plain integer counters on their own objects; a
collector reads them at scrape time. That keeps a `Counter.inc()` (a lock and a dict lookup) out
of the forwarding loop while `/metrics` still shows exact totals. Histograms work the same way:
a :class:`Histogram` is a plain bucket array that a source turns into a ``histogram`` sample.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Sample:
    """One value of a metric family read at scrape time."""

    name: str
    help: str
    kind: str  # "counter", "gauge" or "histogram"
    value: float  # for a histogram: the sum of the observations
    labels: Mapping[str, str] = field(default_factory=dict)
    # Histogram only: (upper bound, cumulative count) pairs, the last one's bound +Inf.
    buckets: tuple[tuple[float, int], ...] = ()


class Histogram:
    """Observations counted into fixed buckets: no lock, no registry, read at scrape time."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be increasing and not empty")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def sample(self, name: str, help: str, labels: Mapping[str, str] | None = None) -> Sample:
        """The histogram as one ``histogram`` sample (cumulative buckets)."""
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return Sample(name, help, "histogram", self.total, labels or {}, tuple(cumulative))


SampleSource = Callable[[], Iterable[Sample]]


class _SourceCollector(Collector):
    """Turns the samples of registered sources into metric families at scrape time."""

    def __init__(self, const_labels: Mapping[str, str]) -> None:
        self._sources: list[SampleSource] = []
        self._const = dict(const_labels)

    def add(self, source: SampleSource) -> None:
        self._sources.append(source)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily] = {}
        for source in self._sources:
            for s in source():
                labels = {**self._const, **s.labels}
                fam = families.get(s.name)
                if fam is None:
                    names = sorted(labels)
                    if s.kind == "counter":
                        fam = CounterMetricFamily(s.name, s.help, labels=names)
                    elif s.kind == "histogram":
                        fam = HistogramMetricFamily(s.name, s.help, labels=names)
                    else:
                        fam = GaugeMetricFamily(s.name, s.help, labels=names)
                    families[s.name] = fam
                values = [labels[k] for k in sorted(labels)]
                if isinstance(fam, HistogramMetricFamily):
                    buckets = [(_le(bound), float(n)) for bound, n in s.buckets]
                    fam.add_metric(values, buckets, s.value)
                else:
                    fam.add_metric(values, s.value)
        return list(families.values())


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class Metrics:
    """A registry per application (no module globals), with scrape-time sample sources."""

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _SourceCollector(const_labels or {})
        self.registry.register(self._collector)

    def add_source(self, source: SampleSource) -> None:
        """Register a callable that yields samples whenever `/metrics` is scraped."""
        self._collector.add(source)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

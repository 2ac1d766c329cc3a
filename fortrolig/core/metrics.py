"""Prometheus metrics: the one home of prometheus_client.

Hot paths (the SFU's per-packet code) keep plain integer counters on their own objects; a
collector reads them at scrape time. That keeps a `Counter.inc()` (a lock and a dict lookup) out
of the forwarding loop while `/metrics` still shows exact totals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Sample:
    """One value of a metric family read at scrape time."""

    name: str
    help: str
    kind: str  # "counter" or "gauge"
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


SampleSource = Callable[[], Iterable[Sample]]


class _SourceCollector(Collector):
    """Turns the samples of registered sources into metric families at scrape time."""

    def __init__(self, const_labels: Mapping[str, str]) -> None:
        self._sources: list[SampleSource] = []
        self._const = dict(const_labels)

    def add(self, source: SampleSource) -> None:
        self._sources.append(source)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for source in self._sources:
            for s in source():
                labels = {**self._const, **s.labels}
                fam = families.get(s.name)
                if fam is None:
                    names = sorted(labels)
                    if s.kind == "counter":
                        fam = CounterMetricFamily(s.name, s.help, labels=names)
                    else:
                        fam = GaugeMetricFamily(s.name, s.help, labels=names)
                    families[s.name] = fam
                fam.add_metric([labels[k] for k in sorted(labels)], s.value)
        return list(families.values())


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

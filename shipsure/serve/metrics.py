"""/metrics: Prometheus exposition of what the watcher last knew, via prometheus-client.

A scrape reads the state file and the in-memory counters only: it never asks the registry.
The last probe's report is exported in the probe's own metric families
(`report.probe_metrics.ProbeCollector`: `shipsure_probe_*`, the names deploy/'s alert rules
and dashboard already use). serve adds `shipsure_serve_*`:

- `shipsure_serve_findings{kind,severity,repository}`: open findings from pushes and probes
  (what an alert on a broken push watches; repositories bounded as the probe bounds them);
- `shipsure_serve_tags{state}`, `shipsure_serve_queue_pending`,
  `shipsure_serve_notifications_total{outcome}`, `shipsure_serve_events_total{result}`
  (queued, coalesced, dropped, ignored), `shipsure_serve_push_verifications_total{outcome}`,
  `shipsure_serve_push_verification_seconds` (histogram: event received -> result recorded),
  `shipsure_serve_last_push_verification_timestamp_seconds`, `shipsure_serve_probe_running`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shipsure import __version__
from shipsure.report.probe_metrics import (
    DEFAULT_MAX_REPOSITORIES,
    OTHER_REPOSITORIES,
    ProbeCollector,
)
from shipsure.serve.pushqueue import PushQueue
from shipsure.serve.store import Store
from shipsure.serve.watcher import LATENCY_BUCKETS, Watcher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

METRIC_NAMES = (
    "shipsure_serve_info",
    "shipsure_serve_findings",
    "shipsure_serve_tags",
    "shipsure_serve_queue_pending",
    "shipsure_serve_notifications_total",
    "shipsure_serve_events_total",
    "shipsure_serve_push_verifications_total",
    "shipsure_serve_push_verification_seconds",
    "shipsure_serve_last_push_verification_timestamp_seconds",
    "shipsure_serve_probe_running",
)


class ServeCollector(Collector):
    def __init__(
        self,
        watcher: Watcher,
        store: Store,
        queue: PushQueue,
        max_repositories: int = DEFAULT_MAX_REPOSITORIES,
    ) -> None:
        self.watcher = watcher
        self.store = store
        self.queue = queue
        self.max_repositories = max(1, max_repositories)

    def collect(self) -> Iterator[Metric]:
        registry = self.watcher.host
        info = GaugeMetricFamily(
            "shipsure_serve_info",
            "The watcher exporting these metrics.",
            labels=["registry", "version"],
        )
        info.add_metric([registry, __version__], 1)
        yield info
        findings = GaugeMetricFamily(
            "shipsure_serve_findings",
            "Open integrity findings (pushes and probes) by kind, severity and repository.",
            labels=["registry", "kind", "severity", "repository"],
        )
        open_findings = self.store.open_findings()
        kept = _bounded(Counter(f.repository for f in open_findings), self.max_repositories)
        counts = Counter(
            (f.kind, f.severity, f.repository if f.repository in kept else OTHER_REPOSITORIES)
            for f in open_findings
        )
        for (kind, severity, repo), n in sorted(counts.items()):
            findings.add_metric([registry, kind, severity, repo], n)
        yield findings
        tags = GaugeMetricFamily(
            "shipsure_serve_tags", "Tags by state.", labels=["registry", "state"]
        )
        for state, n in sorted(self.store.tag_state_counts().items()):
            tags.add_metric([registry, state], n)
        yield tags
        pending = GaugeMetricFamily(
            "shipsure_serve_queue_pending", "Pushes waiting to be verified.", labels=["registry"]
        )
        pending.add_metric([registry], len(self.queue))
        yield pending
        counters = self.watcher.counters
        with counters.lock:
            notifications = dict(counters.notifications)
            verifications = dict(counters.verifications)
            buckets = list(counters.latency_buckets)
            latency_sum, latency_count = counters.latency_sum, counters.latency_count
            last = counters.last_verification
            ignored = counters.events_ignored
        requests = CounterMetricFamily(
            "shipsure_serve_notifications",
            "Notification requests by outcome (accepted, or why refused).",
            labels=["registry", "outcome"],
        )
        for outcome, n in sorted(notifications.items()):
            requests.add_metric([registry, outcome], n)
        yield requests
        events = CounterMetricFamily(
            "shipsure_serve_events",
            "Push events: queued, coalesced into a waiting or covered push, dropped (queue "
            "full: left to the next probe), ignored (pulls, blobs, deletes).",
            labels=["registry", "result"],
        )
        qc = self.queue.counts
        for result, n in (
            ("queued", qc.queued),
            ("coalesced", qc.coalesced),
            ("dropped", qc.dropped),
            ("ignored", ignored),
        ):
            events.add_metric([registry, result], n)
        yield events
        verified = CounterMetricFamily(
            "shipsure_serve_push_verifications",
            "Push verifications by outcome (healthy, broken, could not check, failed).",
            labels=["registry", "outcome"],
        )
        for outcome, n in sorted(verifications.items()):
            verified.add_metric([registry, outcome], n)
        yield verified
        histogram = HistogramMetricFamily(
            "shipsure_serve_push_verification_seconds",
            "Seconds from a push event's arrival to its verification being recorded.",
            labels=["registry"],
        )
        histogram.add_metric(
            [registry],
            [(str(b), float(n)) for b, n in zip(LATENCY_BUCKETS, buckets, strict=True)]
            + [("+Inf", float(latency_count))],
            latency_sum,
        )
        yield histogram
        last_gauge = GaugeMetricFamily(
            "shipsure_serve_last_push_verification_timestamp_seconds",
            "When the last push verification was recorded (Unix seconds; 0: none yet).",
            labels=["registry"],
        )
        last_gauge.add_metric([registry], last)
        yield last_gauge
        running = GaugeMetricFamily(
            "shipsure_serve_probe_running", "1 while a probe runs.", labels=["registry"]
        )
        running.add_metric([registry], 1.0 if self.watcher.probe_running else 0.0)
        yield running
        report = self.watcher.last_probe
        if report is not None:
            state = report.meta.setdefault("probe", {}).setdefault("state", {})
            state["last_complete_timestamp"] = self.store.last_complete_probe()
            yield from ProbeCollector(report, self.max_repositories).collect()


def _bounded(counts: Counter[str], limit: int) -> set[str]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {name for name, _ in ranked[:limit]}


def render(collector: ServeCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)

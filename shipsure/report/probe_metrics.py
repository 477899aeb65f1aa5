"""Prometheus metrics of a finished probe report, exposed with `prometheus-client`.

A custom collector reads the report snapshot (pure: a scrape or a push never triggers
registry I/O). Names follow Prometheus conventions: `shipsure_probe_` prefix, base units,
`_seconds`, `_timestamp_seconds`, `_total` for the one counter, `_info` for the constant
labels. Every series carries `registry` and `shard` labels.

Label cardinality is bounded: findings are labelled by `kind` (a fixed table), `severity`
(four values) and `repository`, and only the `max_repositories` repositories with the most
findings (default 100) get their own `repository` value; the rest are summed under
`repository="(other)"`. Digests and tags are never labels: they live in the JSON report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shipsure import __version__
from shipsure.findings import Report

OTHER_REPOSITORIES = "(other)"
DEFAULT_MAX_REPOSITORIES = 100

# Every metric name this module can emit (the dashboard test reads this list).
METRIC_NAMES = (
    "shipsure_probe_info",
    "shipsure_probe_run_timestamp_seconds",
    "shipsure_probe_last_complete_run_timestamp_seconds",
    "shipsure_probe_duration_seconds",
    "shipsure_probe_complete",
    "shipsure_probe_catalog_accessible",
    "shipsure_probe_auth_accepted",
    "shipsure_probe_repositories",
    "shipsure_probe_repositories_unchecked",
    "shipsure_probe_tags",
    "shipsure_probe_tags_checked",
    "shipsure_probe_coverage_ratio",
    "shipsure_probe_unchecked_tags",
    "shipsure_probe_findings",
    "shipsure_probe_findings_new",
    "shipsure_probe_findings_recovered",
    "shipsure_probe_check_errors",
    "shipsure_probe_checked_objects",
    "shipsure_probe_requests",
    "shipsure_probe_runs_total",
)


class ProbeCollector(Collector):
    """Collects the metrics of one finished probe report (merged reports too)."""

    def __init__(self, report: Report, max_repositories: int = DEFAULT_MAX_REPOSITORIES) -> None:
        self.report = report
        self.max_repositories = max(1, max_repositories)

    def collect(self) -> Iterator[Metric]:
        meta: Mapping[str, Any] = self.report.meta.get("probe", {})
        base = {"registry": str(meta.get("registry", "")), "shard": str(meta.get("shard", ""))}
        names, values = list(base), list(base.values())

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        info = GaugeMetricFamily(
            "shipsure_probe_info", "The probe that wrote these metrics.", labels=[*names, "version"]
        )
        info.add_metric([*values, __version__], 1)
        yield info
        yield gauge(
            "shipsure_probe_run_timestamp_seconds",
            "When the last run finished (Unix seconds).",
            float(meta.get("finished_timestamp", 0)),
        )
        state = meta.get("state") or {}
        last_complete = state.get("last_complete_timestamp")
        if last_complete is None and meta.get("complete"):
            last_complete = meta.get("finished_timestamp")
        yield gauge(
            "shipsure_probe_last_complete_run_timestamp_seconds",
            "When the last run that checked every repository and tag finished (Unix seconds; "
            "0 when none is known).",
            float(last_complete or 0),
        )
        yield gauge(
            "shipsure_probe_duration_seconds",
            "Wall time of the last run.",
            float(meta.get("duration_seconds", 0)),
        )
        yield gauge(
            "shipsure_probe_complete",
            "1 when the last run checked every repository and tag, else 0.",
            1.0 if meta.get("complete") else 0.0,
        )
        yield gauge(
            "shipsure_probe_catalog_accessible",
            "1 when the catalog was listed in full, else 0.",
            1.0 if meta.get("catalog_accessible") else 0.0,
        )
        yield gauge(
            "shipsure_probe_auth_accepted",
            "0 when the registry refused the probe's credentials anywhere, else 1.",
            1.0 if meta.get("auth_accepted", True) else 0.0,
        )
        yield gauge(
            "shipsure_probe_repositories",
            "Repositories selected (catalog, --repo, --shard).",
            float(meta.get("repositories", 0)),
        )
        yield gauge(
            "shipsure_probe_repositories_unchecked",
            "Repositories whose tags could not be listed.",
            float(meta.get("repositories_unchecked", 0)),
        )
        tags, checked = int(meta.get("tags", 0)), int(meta.get("tags_checked", 0))
        yield gauge("shipsure_probe_tags", "Tags selected.", float(tags))
        yield gauge(
            "shipsure_probe_tags_checked",
            "Tags whose whole tree was checked (problems or not).",
            float(checked),
        )
        yield gauge(
            "shipsure_probe_coverage_ratio",
            "Tags checked / tags selected (1 with no tags; see catalog_accessible).",
            checked / tags if tags else 1.0,
        )
        unchecked = GaugeMetricFamily(
            "shipsure_probe_unchecked_tags",
            "Tags that could not be checked, by repository (bounded, see (other)).",
            labels=[*names, "repository"],
        )
        by_repo = Counter[str]()
        for entry in meta.get("unchecked", []):
            by_repo[str(entry.get("repository"))] += max(1, int(entry.get("tags", 0)))
        for repo, n in self._bounded(by_repo).items():
            unchecked.add_metric([*values, repo], n)
        yield unchecked
        findings = GaugeMetricFamily(
            "shipsure_probe_findings",
            "Integrity findings of the last run by kind, severity and repository (bounded).",
            labels=[*names, "kind", "severity", "repository"],
        )
        problems = self.report.problems
        kept = set(self._bounded(Counter(f.repository or "" for f in problems)))
        counts = Counter(
            (
                f.kind,
                f.severity.label,
                f.repository or "" if (f.repository or "") in kept else OTHER_REPOSITORIES,
            )
            for f in problems
        )
        for (kind, severity, repo), n in sorted(counts.items()):
            findings.add_metric([*values, kind, severity, repo], n)
        yield findings
        yield gauge(
            "shipsure_probe_findings_new",
            "Integrity findings not seen by the previous run (needs --state).",
            float(sum(1 for f in problems if f.details.get("change") == "new")),
        )
        yield gauge(
            "shipsure_probe_findings_recovered",
            "Findings of the previous run that this run checked and found gone (needs --state).",
            float(len(state.get("recovered", []))),
        )
        yield gauge(
            "shipsure_probe_check_errors",
            "Objects or listings that could not be checked in the last run.",
            float(len(self.report.check_errors)),
        )
        objects = GaugeMetricFamily(
            "shipsure_probe_checked_objects",
            "Objects checked by the last run (tags, manifests, blobs).",
            labels=[*names, "object"],
        )
        for what, n in sorted(self.report.checked.items()):
            objects.add_metric([*values, what], n)
        yield objects
        requests = GaugeMetricFamily(
            "shipsure_probe_requests",
            "Requests the last run made, by HTTP method (retries not counted).",
            labels=[*names, "method"],
        )
        for method, n in sorted((meta.get("requests") or {}).items()):
            requests.add_metric([*values, method], n)
        yield requests
        if "runs" in state:
            runs = CounterMetricFamily(
                "shipsure_probe_runs", "Runs recorded in the --state file.", labels=names
            )
            runs.add_metric(values, float(state["runs"]))
            yield runs

    def _bounded(self, counts: Counter[str]) -> dict[str, int]:
        """The `max_repositories` largest entries; the rest summed under (other)."""
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out = dict(ranked[: self.max_repositories])
        rest = sum(n for _, n in ranked[self.max_repositories :])
        if rest:
            out[OTHER_REPOSITORIES] = out.get(OTHER_REPOSITORIES, 0) + rest
        return out


def collector_registry(
    report: Report, max_repositories: int = DEFAULT_MAX_REPOSITORIES
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbeCollector(report, max_repositories))
    return registry


def render(report: Report, max_repositories: int = DEFAULT_MAX_REPOSITORIES) -> str:
    """Prometheus text exposition format 0.0.4."""
    return generate_latest(collector_registry(report, max_repositories)).decode()

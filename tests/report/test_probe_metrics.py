"""The probe's Prometheus exposition: every listed metric is emitted, parseable by
prometheus-client's own parser, with bounded repository labels."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shipsure.findings import CHECK_ERROR, Finding, Report, Severity
from shipsure.report.probe_metrics import METRIC_NAMES, OTHER_REPOSITORIES, render


def _report(repositories: int) -> Report:
    report = Report(command="probe")
    for i in range(repositories):
        report.add(
            Finding(
                kind="blob-missing",
                severity=Severity.ERROR,
                message="gone",
                repository=f"team/app{i}",
                digest="sha256:" + "0" * 64,
                details={"change": "new"},
            )
        )
    report.add(Finding(kind=CHECK_ERROR, severity=Severity.WARNING, message="503"))
    report.count("manifests", 3)
    meta: dict[str, Any] = {
        "registry": "reg:5000",
        "shard": "0/1",
        "finished_timestamp": 1700000000.0,
        "duration_seconds": 1.5,
        "complete": False,
        "catalog_accessible": True,
        "auth_accepted": True,
        "repositories": repositories,
        "repositories_unchecked": 0,
        "tags": 10,
        "tags_checked": 9,
        "unchecked": [{"repository": "team/app0", "tags": 1, "reasons": ["503"]}],
        "requests": {"GET": 5, "HEAD": 7},
        "state": {"runs": 4, "last_complete_timestamp": 1699990000.0, "recovered": [{}]},
    }
    report.meta["probe"] = meta
    return report


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_listed_metric_is_emitted_and_parses() -> None:
    text = render(_report(3))
    families = _families(text)
    emitted = {f"{n}_total" if f.type == "counter" else n for n, f in families.items()}
    assert emitted == set(METRIC_NAMES)
    value = {
        name: next(iter(f.samples)).value for name, f in families.items() if len(f.samples) == 1
    }
    assert value["shipsure_probe_coverage_ratio"] == 0.9
    assert value["shipsure_probe_last_complete_run_timestamp_seconds"] == 1699990000.0
    assert value["shipsure_probe_findings_new"] == 3
    assert value["shipsure_probe_findings_recovered"] == 1
    assert value["shipsure_probe_check_errors"] == 1


def test_repository_labels_are_bounded() -> None:
    families = _families(render(_report(250), max_repositories=100))
    samples = families["shipsure_probe_findings"].samples
    assert len(samples) == 101
    other = [s for s in samples if s.labels["repository"] == OTHER_REPOSITORIES]
    assert other[0].value == 150
    assert sum(s.value for s in samples) == 250

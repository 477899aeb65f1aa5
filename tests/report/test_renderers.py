"""Renderers are pure and total: every format renders any report."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from shipsure.findings import CHECK_ERROR, ExitCode, Finding, Report, Severity
from shipsure.report import RENDERERS, OutputFormat, render


def _report() -> Report:
    report = Report(command="verify")
    report.count("manifests", 4)
    report.add(
        Finding(
            kind="blob-missing",
            severity=Severity.ERROR,
            message='layer blob is missing (404 BLOB_UNKNOWN) "quoted"',
            repository="team/app",
            reference="reg.io/team/app:latest",
            digest="sha256:" + "b" * 64,
            path=("tag latest", "linux/arm64 sha256:..", "layer 0 sha256:.."),
            details={"status": 404, "error_code": "BLOB_UNKNOWN"},
        )
    )
    report.add(
        Finding(kind=CHECK_ERROR, severity=Severity.WARNING, message="timeout", repository="x")
    )
    return report


def test_every_format_has_a_renderer() -> None:
    assert set(RENDERERS) == set(OutputFormat)
    for fmt in OutputFormat:
        assert render(_report(), fmt).endswith("\n")
        assert render(Report(command="verify"), fmt)


def test_json_shape_has_the_finding_fields() -> None:
    doc = json.loads(render(_report(), OutputFormat.JSON))
    assert doc["command"] == "verify"
    first = doc["findings"][0]
    for key in ("kind", "severity", "repository", "reference", "digest", "message"):
        assert key in first
    assert first["severity"] == "error" and first["status"] == 404
    assert doc["findings"][1]["digest"] is None


def test_text_names_repository_digest_and_path() -> None:
    text = render(_report(), OutputFormat.TEXT)
    assert "team/app@sha256:" + "b" * 64 in text
    assert "tag latest -> linux/arm64" in text
    assert text.splitlines()[-1].startswith("verify: 1 problem(s), 1 could not be checked")


def test_prometheus_escapes_labels_and_counts() -> None:
    text = render(_report(), OutputFormat.PROMETHEUS)
    assert 'shipsure_findings{command="verify",kind="blob-missing",severity="error"} 1' in text
    assert 'shipsure_problems{command="verify"} 1' in text
    assert 'shipsure_check_errors{command="verify"} 1' in text


def test_exit_codes_problem_beats_check_error() -> None:
    assert _report().exit_code() == ExitCode.FINDINGS
    only_errors = Report(command="verify")
    only_errors.add(Finding(kind=CHECK_ERROR, severity=Severity.WARNING, message="x"))
    assert only_errors.exit_code() == ExitCode.COULD_NOT_RUN
    assert Report(command="verify").exit_code() == ExitCode.CLEAN
    assert _report().exit_code(Severity.CRITICAL) == ExitCode.COULD_NOT_RUN


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (scripts/setup.sh)")
def test_prometheus_output_passes_promtool_lint() -> None:
    # A gauge named `*_total` (reserved for counters) is refused by `promtool check metrics`.
    text = render(_report(), OutputFormat.PROMETHEUS)
    assert 'shipsure_checked_objects{command="verify",object="manifests"} 4' in text
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

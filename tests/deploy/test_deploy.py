"""deploy/: alert rules checked and unit-tested by promtool, Kubernetes manifests validated
against the Kubernetes schemas offline (kubernetes-validate ships them), a dashboard whose
every query names a metric the probe emits, runbooks for every alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipsure.cli.main import main
from shipsure.report.probe_metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "shipsure-probe.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "shipsure-probe.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "shipsure-probe.json"
KUBERNETES = DEPLOY / "kubernetes"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool (Debian package prometheus; scripts/setup.sh)"
)
_METRIC_RE = re.compile(r"\bshipsure_[a-z_]+\b")


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@needs_promtool
def test_promtool_checks_the_alert_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_runbook_and_a_summary_naming_what_broke() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert names == {
        "ShipsureRegistryIntegrityFailure",
        "ShipsureProbeStale",
        "ShipsureRegistryCatalogInaccessible",
        "ShipsureRegistryAuthFailing",
        "ShipsureProbeCoverageDropped",
    }
    for rule in _rules():
        notes = rule["annotations"]
        assert notes["runbook_url"] == f"docs/runbooks/{rule['alert']}.md"
        assert (ROOT / notes["runbook_url"]).is_file(), notes["runbook_url"]
        assert "{{ $labels.registry }}" in notes["summary"]
        if "repository" in rule["expr"]:
            assert "{{ $labels.repository }}" in notes["summary"]
        for metric in _METRIC_RE.findall(rule["expr"]):
            assert metric in METRIC_NAMES, (rule["alert"], metric)


def test_the_prometheus_rule_resource_holds_the_same_rules() -> None:
    resource = yaml.safe_load((KUBERNETES / "prometheusrule.yaml").read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas_offline() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "PrometheusRule":
                continue  # a CRD: its spec is the promtool-checked rules file (above)
            # Strict: unknown fields are errors (a typo would be silently ignored by kubectl).
            kubernetes_validate.validate(doc, "1.29.0", strict=True)
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
            checked += 1
    assert checked == 4
    sharded = yaml.safe_load((KUBERNETES / "probe-sharded-cronjob.yaml").read_text())
    job = sharded["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    args = job["template"]["spec"]["containers"][0]["args"]
    assert f"--shard=$(JOB_COMPLETION_INDEX)/{job['completions']}" in args


def test_a_typo_in_a_manifest_is_caught() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = yaml.safe_load((KUBERNETES / "probe-cronjob.yaml").read_text())
    doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["agrs"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.29.0", strict=True)


def _dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]
    for variable in doc["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
    return queries


def test_every_dashboard_query_names_a_metric_the_probe_emits() -> None:
    queries = _dashboard_queries()
    assert len(queries) > 10
    for query in queries:
        names = _METRIC_RE.findall(query)
        assert names, query
        for name in names:
            assert name in METRIC_NAMES, (name, query)


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule; Grafana's variables become
    # what they expand to with "All" selected.
    rules = [
        {"record": f"shipsure:dashboard_query:{i}", "expr": q.replace("$registry", ".*")}
        for i, q in enumerate(_dashboard_queries())
        if not q.startswith("label_values(")
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deploy_files_pass_shipsure_lint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(DEPLOY)]) == 0, capsys.readouterr().out

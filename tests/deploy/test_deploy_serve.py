"""deploy/ for `shipsure serve`: the Deployment, Service, ConfigMap and volume validate
against the Kubernetes schemas offline, the ConfigMap's options are ones serve accepts and
point where the Deployment mounts, the Service routes to the container's port, and the
registry's notifications snippet parses (the end-to-end tests run it on a real registry);
serve's alert rules pass promtool's check and unit tests and have runbooks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipsure.cli.main import build_parser
from shipsure.cli.serve import apply_config
from shipsure.report.probe_metrics import METRIC_NAMES as PROBE_METRICS
from shipsure.serve.metrics import METRIC_NAMES as SERVE_METRICS

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "deploy" / "kubernetes" / "serve"
SNIPPET = ROOT / "deploy" / "registry" / "notifications.yml"


def _docs() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(SERVE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_serve_manifests_validate_against_the_kubernetes_schemas_offline() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _docs()
    assert sorted(docs) == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.29.0", strict=True)
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_config_map_holds_options_serve_accepts_at_the_mounted_paths(
    tmp_path: Path,
) -> None:
    docs = _docs()
    config = tmp_path / "serve.yaml"
    config.write_text(docs["ConfigMap"]["data"]["serve.yaml"])
    args = build_parser("serve").parse_args(["serve", "--config", str(config)])
    apply_config(args, args.serve_parser)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert container["args"] == ["serve", f"--config={mounts['config']}/serve.yaml"]
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert args.state.startswith(mounts["state"] + "/")
    assert args.notifications_token_file.startswith(mounts["notifications-token"] + "/")
    assert args.listen.endswith(":8080")
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert docs["Deployment"]["spec"]["replicas"] == 1
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_service_reaches_the_container_and_the_snippet_points_at_it() -> None:
    docs = _docs()
    service = docs["Service"]
    pod = docs["Deployment"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    (port,) = service["spec"]["ports"]
    names = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert port["targetPort"] in names
    (endpoint,) = yaml.safe_load(SNIPPET.read_text())["notifications"]["endpoints"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert endpoint["url"] == f"http://{name}.{namespace}.svc:{port['port']}/notifications"
    assert endpoint["headers"]["Authorization"][0].startswith("Bearer ")
    assert endpoint["ignore"]["actions"] == ["pull"]


SERVE_RULES = ROOT / "deploy" / "prometheus" / "shipsure-serve.rules.yml"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool (Debian package prometheus; scripts/setup.sh)",
)


@needs_promtool
def test_promtool_checks_and_unit_tests_serve_alert_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(SERVE_RULES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rules found" in checked.stdout
    tested = subprocess.run(
        ["promtool", "test", "rules", "shipsure-serve.rules.test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SERVE_RULES.parent,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_serve_alerts_have_runbooks_and_name_emitted_metrics() -> None:
    rules = [r for g in yaml.safe_load(SERVE_RULES.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {"ShipsureBrokenPush", "ShipsureServePushesDropped"}
    emitted = set(SERVE_METRICS) | set(PROBE_METRICS)
    for rule in rules:
        assert (ROOT / rule["annotations"]["runbook_url"]).is_file()
        assert "{{ $labels.registry }}" in rule["annotations"]["summary"]
        for name in re.findall(r"\bshipsure_[a-z_]+\b", rule["expr"]):
            assert name in emitted, (rule["alert"], name)

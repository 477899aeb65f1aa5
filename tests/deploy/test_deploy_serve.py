"""deploy/ for `shipsure serve`: the Deployment, Service, ConfigMap and volume validate
against the Kubernetes schemas offline, the ConfigMap's options are ones serve accepts and
point where the Deployment mounts, the Service routes to the container's port, and the
registry's notifications snippet parses (the end-to-end tests run it on a real registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shipsure.cli.main import build_parser
from shipsure.cli.serve import apply_config

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

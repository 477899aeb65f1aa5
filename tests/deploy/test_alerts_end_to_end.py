"""End to end: a broken image on a real registry, `shipsure probe --textfile` read by a real
node-exporter, the alert rules loaded by a real Prometheus: the integrity alert fires with
the repository and kind, and resolves after the repair. The same through a real Pushgateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipsure.cli.main import main
from shipsure.sandbox import faults
from shipsure.sandbox.registry import SandboxRegistry
from shipsure.sandbox.synthetic import SyntheticSpec, generate

from . import monitoring
from .test_deploy import RULES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (monitoring.PROMETHEUS and monitoring.NODE_EXPORTER and monitoring.PUSHGATEWAY),
        reason="needs prometheus, prometheus-node-exporter and prometheus-pushgateway "
        "(Debian packages; scripts/setup.sh)",
    ),
]

ALERT = "ShipsureRegistryIntegrityFailure"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    started: list[monitoring.Server] = []
    try:
        node = monitoring.start_node_exporter(tmp_path, textfiles)
        started.append(node)
        gateway = monitoring.start_pushgateway(tmp_path)
        started.append(gateway)
        prometheus = monitoring.start_prometheus(
            tmp_path,
            RULES,
            {"node": f"127.0.0.1:{node.port}", "pushgateway": f"127.0.0.1:{gateway.port}"},
        )
        started.append(prometheus)
        yield {"textfiles": textfiles, "prometheus": prometheus, "gateway": gateway}
    finally:
        for server in reversed(started):
            server.stop()


def _alerts(prometheus: monitoring.Server) -> list[dict[str, Any]]:
    doc = monitoring.get_json(prometheus.url + "/api/v1/alerts")
    return [a for a in doc["data"]["alerts"] if a["labels"]["alertname"] == ALERT]


def test_integrity_alert_fires_with_the_repository_and_resolves_after_repair(
    fresh_registry: SandboxRegistry, stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = fresh_registry.root
    tree = generate(root, SyntheticSpec(repositories=3, tags=2, platforms=2))
    broken = tree.repositories[1]
    layer = tree.tag(broken, "v1").children[1].layers[-1]
    saved = faults.blob_data_path(root, layer).read_bytes()
    faults.remove_blob_data(root, layer)
    textfile = stack["textfiles"] / "shipsure.prom"
    prometheus = stack["prometheus"]

    assert main(["probe", "--textfile", str(textfile), fresh_registry.host]) == 1
    firing = monitoring.wait_for(
        "the integrity alert to fire",
        lambda: [a for a in _alerts(prometheus) if a["state"] == "firing"],
    )
    assert len(firing) == 1
    labels = firing[0]["labels"]
    assert labels["repository"] == broken
    assert labels["kind"] == "blob-missing"
    assert labels["registry"] == fresh_registry.host
    assert labels["severity"] == "critical"
    assert broken in firing[0]["annotations"]["summary"]
    assert firing[0]["annotations"]["runbook_url"].endswith(f"{ALERT}.md")

    faults.write_atomically(faults.blob_data_path(root, layer), saved)
    assert main(["probe", "--textfile", str(textfile), fresh_registry.host]) == 0
    monitoring.wait_for("the integrity alert to resolve", lambda: not _alerts(prometheus))

    # The same through the Pushgateway, for probes that run as Kubernetes Jobs.
    faults.remove_blob_data(root, layer)
    gateway = stack["gateway"].url
    assert main(["probe", "--pushgateway", gateway, fresh_registry.host]) == 1
    pushed = monitoring.wait_for(
        "the pushed integrity alert to fire",
        lambda: [a for a in _alerts(prometheus) if a["state"] == "firing"],
    )
    assert pushed[0]["labels"]["repository"] == broken
    capsys.readouterr()

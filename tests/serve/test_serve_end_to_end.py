"""`shipsure serve` against real registries sending real notifications.

The registry (distribution 2.8 and v3) is configured with a `notifications` endpoint that
points at a `shipsure serve` process on loopback, as deploy/ configures it. Waits are polls
with a deadline; nothing asserts how fast.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import wait_until

from shipsure.sandbox import faults, images
from shipsure.sandbox.peers import missing_reason, peer_path

pytestmark = pytest.mark.both_registries


def _series(metrics: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _tag_state(page: str, repository: str, tag: str) -> str | None:
    """The state shown in the page's row for `repository` and `tag`."""
    row = re.search(
        rf"<td>{re.escape(repository)}</td><td><b>{re.escape(tag)}</b></td>\s*"
        r'<td><span class="state [\w-]+">([^<]+)</span>',
        page,
    )
    return row.group(1) if row else None


def _healthy_verifications(serve: Any) -> float:
    return _series(serve.metrics(), "shipsure_serve_push_verifications_total", outcome="healthy")


def test_broken_push_shows_on_metrics_and_page(watched_factory: Any, repo_name: str) -> None:
    """A re-push whose layer the registry claims to have (HEAD 200 from its blob cache)
    although the data is gone: the push succeeds, serve's walk finds it."""
    watched = watched_factory(serve_args=("--probe-interval", "0"))
    registry, serve = watched.registry, watched.serve
    v1 = images.push_image(registry.url, repo_name, "v1")
    wait_until(
        lambda: _healthy_verifications(serve) >= 1,
        what="the clean push to be verified",
    )
    assert serve.findings() == []
    lost = v1.layer_digests[0]
    faults.remove_blob_data(registry.root, lost)
    # The pusher HEADs the shared layer, gets 200 from the cache and does not upload it.
    v2 = images.push_image(registry.url, repo_name, "v2", shared_layers=[f"{repo_name}:v1/0"])
    assert lost in v2.layer_digests

    def on_metrics() -> bool:
        text = serve.metrics()
        return _series(text, "shipsure_serve_findings", repository=repo_name) >= 1

    wait_until(on_metrics, what="the broken push on /metrics")
    metrics = serve.metrics()
    assert _series(metrics, "shipsure_serve_tags", state="broken") == 1
    findings = serve.findings()
    assert len(findings) == 1
    finding = findings[0]
    assert finding["kind"] in ("blob-missing", "blob-truncated")
    assert finding["repository"] == repo_name
    assert finding["digest"] == lost
    assert finding["tags"] == ["v2"]
    assert finding["path"][0] == f"digest {v2.digest}"
    assert finding["path"][-1] == f"layer 0 {lost}"
    assert finding["first_seen"].endswith("Z")

    page = serve.get("/").text
    assert _tag_state(page, repo_name, "v2") == "broken"
    assert f"layer 0 {lost}" in page  # the path to the missing layer
    assert _tag_state(page, repo_name, "v1") == "healthy"  # no event says v1 broke


def test_clean_push_storm_produces_no_finding(watched_factory: Any, repo_name: str) -> None:
    watched = watched_factory(serve_args=("--probe-interval", "0", "--index-debounce", "0.5"))
    registry, serve = watched.registry, watched.serve
    pushed = [images.push_image(registry.url, repo_name, f"img{i}") for i in range(4)]
    index = images.push_index(registry.url, repo_name, "multi", attestations=True)
    nested = images.push_index(registry.url, repo_name, "nested", kind="docker", nested=True)
    tags = [p.tag for p in pushed] + ["multi", "nested"]

    def all_healthy() -> bool:
        page = serve.get("/", params={"q": repo_name}).text
        pending = _series(serve.metrics(), "shipsure_serve_queue_pending")
        return pending == 0 and all(f"<b>{t}</b>" in page for t in tags)

    wait_until(all_healthy, what="every pushed tag to be verified")
    assert serve.findings() == []
    metrics = serve.metrics()
    assert _series(metrics, "shipsure_serve_tags", state="healthy") == len(tags)
    assert _series(metrics, "shipsure_serve_tags", state="broken") == 0
    assert _series(metrics, "shipsure_serve_push_verifications_total", outcome="broken") == 0
    assert index.digest and nested.digest
    # Children pushed by digest are covered by their index's walk, not walked again.
    assert _series(metrics, "shipsure_serve_events_total", result="coalesced") >= 1


def test_push_by_a_real_client_is_verified(
    watched_factory: Any, repo_name: str, tmp_path: Path
) -> None:
    crane = peer_path("crane")
    if crane is None:
        pytest.skip(missing_reason("crane"))
    watched = watched_factory(serve_args=("--probe-interval", "0"))
    registry, serve = watched.registry, watched.serve
    layer = tmp_path / "layer.tar"
    subprocess.run(
        ["tar", "-cf", str(layer), "-C", str(Path(__file__).parent), "conftest.py"], check=True
    )
    subprocess.run(
        [
            str(crane),
            "append",
            "--insecure",
            "-f",
            str(layer),
            "-t",
            f"{registry.host}/{repo_name}:crane",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_until(
        lambda: _healthy_verifications(serve) >= 1,
        what="crane's push to be verified",
    )
    page = serve.get("/", params={"q": "crane"}).text
    assert _tag_state(page, repo_name, "crane") == "healthy"
    assert serve.findings() == []

"""A registry whose blob-descriptor cache outlived the data (registry-facts §3): HEAD 200,
GET short. restore names the stale entry, says what to flush, and uploads the data again."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from shipsure.cli.main import main
from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry


@pytest.mark.both_registries
def test_stale_cache_is_named_and_healed(
    cached_registry: SandboxRegistry,
    second_registry: SandboxRegistry,
    repo_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = images.push_image(cached_registry.url, repo_name, "v1")
    images.push_image(second_registry.url, repo_name, "v1")
    layer = image.layer_digests[0]
    url = f"{cached_registry.url}/v2/{repo_name}/blobs/{layer}"
    assert httpx.head(url).status_code == 200  # the cache now holds the descriptor
    faults.remove_blob_data(cached_registry.root, layer)
    assert httpx.head(url).status_code == 200  # stale: the data is gone
    ref = f"{cached_registry.host}/{repo_name}:v1"
    assert main(["restore", ref, "--from", second_registry.host, "--format", "json"]) == 1
    plan = json.loads(capsys.readouterr().out)
    assert [s["digest"] for s in plan["stale_caches"]] == [layer]
    assert [(s["op"], s["digest"]) for s in plan["steps"]] == [("upload-blob", layer)]
    journal = str(tmp_path / "j.jsonl")
    args = ["--from", second_registry.host, "--apply", "--journal", journal]
    assert main(["restore", ref, *args]) == 0
    assert "restart the registry" in capsys.readouterr().out
    assert main(["verify", "--deep", ref]) == 0

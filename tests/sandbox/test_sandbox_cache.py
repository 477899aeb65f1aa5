"""With the in-memory blob cache, HEAD lies about removed data (registry-facts §3)."""

from __future__ import annotations

import httpx
import pytest

from shipsure.sandbox import faults, images
from shipsure.sandbox.registry import SandboxRegistry

from .served import Served

# Every registry test here runs against distribution 2.8 and v3 (tests/conftest.py).
pytestmark = pytest.mark.both_registries


def read_what_arrives(client: httpx.Client, url: str) -> tuple[int, int, bytes]:
    """Status, announced length and the bytes that came before the connection closed."""
    received = b""
    with client.stream("GET", url) as response:
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.RemoteProtocolError:
            pass  # the registry closes early: that short body is the symptom
        return response.status_code, int(response.headers["content-length"]), received


def test_cached_head_is_200_for_a_blob_whose_data_is_gone(
    cached_registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    registry = cached_registry
    image = images.push_image(registry.url, repo_name, "v1")
    layer = image.layers[0]
    served = Served(http, registry.url, repo_name)
    assert served.blob(layer.digest, "HEAD").status_code == 200
    faults.remove_blob_data(registry.root, layer.digest)

    head = served.blob(layer.digest, "HEAD")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == layer.size
    status, announced, body = read_what_arrives(http, f"{served.base}/blobs/{layer.digest}")
    assert status == 200
    assert announced == layer.size
    assert len(body) < layer.size  # observed: 0 bytes

    # Pushing already fills the cache: the config was never asked for, and still lies.
    faults.remove_blob_data(registry.root, image.config_digest)
    assert served.blob(image.config_digest, "HEAD").status_code == 200


def test_without_a_cache_head_tells_the_truth(
    registry: SandboxRegistry, repo_name: str, http: httpx.Client
) -> None:
    image = images.push_image(registry.url, repo_name, "v1")
    served = Served(http, registry.url, repo_name)
    assert served.blob(image.layer_digests[0], "HEAD").status_code == 200
    faults.remove_blob_data(registry.root, image.layer_digests[0])
    assert served.blob(image.layer_digests[0], "HEAD").status_code == 404


def test_restart_empties_the_cache(repo_name: str, http: httpx.Client) -> None:
    with SandboxRegistry(blob_cache="inmemory") as registry:
        image = images.push_image(registry.url, repo_name, "v1")
        faults.remove_blob_data(registry.root, image.layer_digests[0])
        served = Served(http, registry.url, repo_name)
        assert served.blob(image.layer_digests[0], "HEAD").status_code == 200
        registry.restart()
        assert served.blob(image.layer_digests[0], "HEAD").status_code == 404
